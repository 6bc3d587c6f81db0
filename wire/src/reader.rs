//! A bounds-checked cursor over a byte slice: every read either succeeds or
//! returns [`Truncated`], so decoders never index out of range.

use crate::error::Truncated;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8], what: &'static str) -> Self {
        Reader { data, what }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        self.data
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        if self.data.len() < n {
            return Err(Truncated {
                what: self.what,
                needed: n,
                available: self.data.len(),
            });
        }
        let (head, tail) = self.data.split_at(n);
        self.data = tail;
        Ok(head)
    }

    /// Splits off the next `n` bytes as a reader of their own, named `what`.
    pub(crate) fn sub(&mut self, n: usize, what: &'static str) -> Result<Reader<'a>, Truncated> {
        let saved = self.what;
        self.what = what;
        let data = self.take(n);
        self.what = saved;
        Ok(Reader::new(data?, what))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Truncated> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Truncated> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Truncated> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn ipv4(&mut self) -> Result<Ipv4Addr, Truncated> {
        Ok(Ipv4Addr::from(self.array::<4>()?))
    }

    pub(crate) fn ipv6(&mut self) -> Result<Ipv6Addr, Truncated> {
        Ok(Ipv6Addr::from(self.array::<16>()?))
    }
}

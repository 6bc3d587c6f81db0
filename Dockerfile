# meshlb's image: meshlb-agent and meshlbctl, static binaries, on scratch.
#
#   docker build -t meshlb-agent .        (or: buildah bud, podman build)
#
# Stage `build` compiles the binaries with scripts/build-static in Rust's
# image. Where that image cannot be pulled (the project's CI has no
# registry), scripts/image builds the binaries on the host, puts them in an
# image of their own and passes it as BINARIES, so the final stage below is
# the same either way.
ARG RUST_IMAGE=docker.io/library/rust:1.89-bookworm
ARG BINARIES=build

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN scripts/build-static /out --release

FROM ${BINARIES} AS binaries

FROM scratch
COPY --from=binaries /out/ /
# Root for the capabilities (NET_RAW, NET_BIND_SERVICE) that answering ARP
# and NDP and BGP's port 179 need: Kubernetes gives a process that is not
# root none. The chart drops every other capability and makes the root
# filesystem read-only.
USER 0:0
ENTRYPOINT ["/usr/local/bin/meshlb-agent"]
CMD ["run", "--kubernetes"]
LABEL org.opencontainers.image.title="meshlb-agent" \
      org.opencontainers.image.description="Load balancer for bare-metal Kubernetes, configured with MetalLB's custom resources" \
      org.opencontainers.image.licenses="Apache-2.0"

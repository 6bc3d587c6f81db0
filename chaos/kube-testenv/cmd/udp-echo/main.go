// Command udp-echo is the lab's workload on real nodes: a pod's server
// that answers the lab prober's datagrams as the lab's own responder
// does (meshlb-chaos probe::run_responder), with the first 8 bytes of
// each datagram (the probe's sequence number) followed by a name, here
// "POD@NODE" from the downward API's POD_NAME and NODE_NAME, so a probe's
// answer says which pod on which node took it. It listens on every
// address, IPv4 and IPv6, on --port.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
)

func main() {
	port := flag.Int("port", 8007, "UDP port to answer on")
	flag.Parse()
	name := os.Getenv("POD_NAME") + "@" + os.Getenv("NODE_NAME")
	socket, err := net.ListenUDP("udp", &net.UDPAddr{Port: *port})
	if err != nil {
		fmt.Fprintf(os.Stderr, "udp-echo: %v\n", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "udp-echo: answering on port %d as %s\n", *port, name)
	buf := make([]byte, 64)
	for {
		n, from, err := socket.ReadFromUDP(buf)
		if err != nil {
			fmt.Fprintf(os.Stderr, "udp-echo: %v\n", err)
			os.Exit(1)
		}
		if n < 8 {
			continue
		}
		reply := append(append([]byte{}, buf[:8]...), name...)
		// A send can fail while the lab is being faulted; keep answering.
		_, _ = socket.WriteToUDP(reply, from)
	}
}

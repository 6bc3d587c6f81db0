// Command kube-testenv runs a real Kubernetes control plane for meshlb's
// tests and lab: an embedded single-node etcd and the real kube-apiserver
// (k8s.io/kubernetes/cmd/kube-apiserver/app) in one process.
//
// It runs the API server the way a cluster does: TLS with a CA it
// generates, token and client-certificate authentication, RBAC and Node
// authorization, the default admission plugins that make sense without a
// controller manager, and a service-account issuer and signing key (so the
// TokenRequest API issues real service-account tokens). It writes, in
// --dir:
//
//	ca.crt       the CA that signed the serving and client certificates
//	kubeconfig   an admin kubeconfig (token of a system:masters user)
//	admin.crt/.key  an admin client certificate, for client-cert tests
//	kubelet-client.crt/.key  the API server's own certificate towards
//	             kubelets (kubectl logs and exec reach them with it, at
//	             their Nodes' InternalIP)
//	etcd/        etcd's data (no fsync: a test environment)
//	apiserver.log  the API server's log (stderr also goes there)
//
// Started again on the same --dir and --port, it keeps the credentials and
// etcd's data (an API-server restart, as tests of watches need).
//
// With --nodes it serves a cluster of real nodes (the lab's kubelets,
// kube-proxies, scheduler and controller manager, each its own process):
// it writes a kubeconfig per node (kubeconfig-NODE, user system:node:NODE
// in group system:nodes, which the Node authorizer and the NodeRestriction
// admission plugin hold to its own node), one each for kube-proxy,
// kube-scheduler and kube-controller-manager (their users as Kubernetes'
// default RBAC bindings name them), and the ServiceAccount admission
// plugin is on, since a controller manager then gives every namespace its
// default service account. Without --nodes there is no kubelet and no
// controller manager: tests create Node objects and EndpointSlices
// themselves. It stops on SIGTERM or SIGINT, and with
// --exit-with-parent also when the process that started it is gone (a test
// binary that ends without stopping it leaves nothing running; with
// --remove-dir-on-exit, no directory either).
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	dir := flag.String("dir", "", "working directory (certificates, kubeconfig, etcd data); created if missing")
	bind := flag.String("bind", "127.0.0.1", "address the API server listens on and advertises")
	port := flag.Int("port", 0, "the API server's secure port (0: a free one)")
	exitWithParent := flag.Bool("exit-with-parent", false, "stop when the parent process is gone")
	removeDir := flag.Bool("remove-dir-on-exit", false, "remove --dir when stopping")
	nodes := flag.String("nodes", "", "comma-separated names of real nodes to write credentials for (and run as a full cluster)")
	flag.Parse()
	if *dir == "" {
		fail(fmt.Errorf("--dir is required"))
	}
	var nodeNames []string
	if *nodes != "" {
		nodeNames = strings.Split(*nodes, ",")
	}
	err := run(*dir, *bind, *port, *exitWithParent, nodeNames)
	if *removeDir {
		if removeErr := os.RemoveAll(*dir); removeErr != nil && err == nil {
			err = removeErr
		}
	}
	if err != nil {
		fail(err)
	}
}

// whenOrphaned cancels when this process's parent is gone (it is then
// re-parented, so its parent process id changes).
func whenOrphaned(cancel context.CancelFunc) {
	parent := os.Getppid()
	for range time.Tick(500 * time.Millisecond) {
		if os.Getppid() != parent {
			fmt.Fprintln(os.Stderr, "kube-testenv: parent gone, stopping")
			cancel()
			return
		}
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "kube-testenv: %v\n", err)
	os.Exit(1)
}

func run(dir, bind string, port int, exitWithParent bool, nodes []string) error {
	ip := net.ParseIP(bind)
	if ip == nil {
		return fmt.Errorf("--bind %q is not an IP address", bind)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if port == 0 {
		var err error
		if port, err = freePort(bind); err != nil {
			return err
		}
	}
	etcdClient, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	etcdPeer, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	server := "https://" + net.JoinHostPort(bind, strconv.Itoa(port))
	files := credentialFiles(dir)
	if _, err := os.Stat(filepath.Join(dir, "kubeconfig")); err != nil {
		if err := writeCredentials(files, dir, ip, server, nodes); err != nil {
			return err
		}
	}

	etcd, err := startEtcd(filepath.Join(dir, "etcd"), etcdClient, etcdPeer)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer etcd.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if exitWithParent {
		go whenOrphaned(stop)
	}
	reconciler := "lease"
	if ip.IsLoopback() {
		// The kubernetes Service's endpoints may not be loopback
		// addresses; on loopback nothing reaches it through them anyway.
		reconciler = "none"
	}
	disabledAdmission := ""
	if len(nodes) == 0 {
		// Without a controller manager no namespace gets a default
		// service account, so this plugin would refuse every Pod.
		disabledAdmission = "ServiceAccount"
	}
	command := app.NewAPIServerCommand()
	command.SetArgs([]string{
		"--endpoint-reconciler-type=" + reconciler,
		"--bind-address=" + bind,
		"--advertise-address=" + bind,
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(dir, "serving"),
		"--tls-cert-file=" + files.servingCert,
		"--tls-private-key-file=" + files.servingKey,
		"--client-ca-file=" + files.ca,
		"--token-auth-file=" + files.tokens,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--disable-admission-plugins=" + disabledAdmission,
		"--service-account-issuer=" + server,
		"--service-account-key-file=" + files.serviceAccountKey,
		"--service-account-signing-key-file=" + files.serviceAccountKey,
		// Dual-stack, so dual-stack LoadBalancer Services can be tested.
		// Both ranges lie in the lab's own: 198.18.0.0/15 (RFC 2544's
		// benchmarking block) holds pod and cluster IPs, the IPv6 range
		// the documentation prefix.
		"--service-cluster-ip-range=198.19.0.0/16,2001:db8:ffff:96::/112",
		"--allow-privileged=true",
		// Webhooks (MetalLB's) reach a Service's endpoints, as the lab's
		// EndpointSlices say, rather than its cluster IP: no kube-proxy
		// routes cluster IPs from the control-plane host.
		"--enable-aggregator-routing=true",
		// kubectl logs, exec and port-forward reach a kubelet at its
		// Node's InternalIP: the lab's node names resolve nowhere (the
		// default tries the Hostname address first, through DNS).
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-client-certificate=" + files.kubeletClientCert,
		"--kubelet-client-key=" + files.kubeletClientKey,
		"--etcd-servers=http://127.0.0.1:" + strconv.Itoa(etcdClient),
		"--v=1",
	})
	// The API server handles SIGTERM itself (graceful shutdown); the
	// context is the backstop.
	if err := command.ExecuteContext(ctx); err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	return nil
}

// freePort asks the kernel for a free TCP port on address.
func freePort(address string) (int, error) {
	listener, err := net.Listen("tcp", net.JoinHostPort(address, "0"))
	if err != nil {
		return 0, err
	}
	defer listener.Close()
	return listener.Addr().(*net.TCPAddr).Port, nil
}

func startEtcd(dataDir string, clientPort, peerPort int) (*embed.Etcd, error) {
	config := embed.NewConfig()
	config.Name = "kube-testenv"
	config.Dir = dataDir
	config.UnsafeNoFsync = true
	config.LogLevel = "error"
	client, err := url.Parse("http://127.0.0.1:" + strconv.Itoa(clientPort))
	if err != nil {
		return nil, err
	}
	peer, err := url.Parse("http://127.0.0.1:" + strconv.Itoa(peerPort))
	if err != nil {
		return nil, err
	}
	config.ListenClientUrls = []url.URL{*client}
	config.AdvertiseClientUrls = []url.URL{*client}
	config.ListenPeerUrls = []url.URL{*peer}
	config.AdvertisePeerUrls = []url.URL{*peer}
	config.InitialCluster = config.InitialClusterFromName(config.Name)
	etcd, err := embed.StartEtcd(config)
	if err != nil {
		return nil, err
	}
	select {
	case <-etcd.Server.ReadyNotify():
		return etcd, nil
	case <-time.After(60 * time.Second):
		etcd.Close()
		return nil, fmt.Errorf("not ready after 60 s")
	}
}

type credentials struct {
	ca, servingCert, servingKey, tokens, serviceAccountKey string
	// The API server's client certificate towards the kubelets (logs,
	// exec, port-forward), as kubeadm issues one.
	kubeletClientCert, kubeletClientKey string
}

func credentialFiles(dir string) credentials {
	return credentials{
		ca:                filepath.Join(dir, "ca.crt"),
		servingCert:       filepath.Join(dir, "serving.crt"),
		servingKey:        filepath.Join(dir, "serving.key"),
		tokens:            filepath.Join(dir, "tokens.csv"),
		serviceAccountKey: filepath.Join(dir, "service-account.key"),
		kubeletClientCert: filepath.Join(dir, "kubelet-client.crt"),
		kubeletClientKey:  filepath.Join(dir, "kubelet-client.key"),
	}
}

// writeCredentials generates the CA, the serving certificate, an admin
// client certificate, the API server's kubelet client certificate, the
// admin token, the service-account signing key,
// the nodes' and components' tokens and kubeconfigs, and the admin
// kubeconfig (written last: its presence says the rest is there).
func writeCredentials(files credentials, dir string, ip net.IP, server string, nodes []string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kube-testenv CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := writePEM(files.ca, "CERTIFICATE", caDER); err != nil {
		return err
	}
	serving := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{ip, net.ParseIP("127.0.0.1"), net.ParseIP("198.19.0.1")},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"},
	}
	if err := issue(serving, ca, caKey, files.servingCert, files.servingKey); err != nil {
		return err
	}
	// Client certificates in group system:masters: an admin's, and the
	// API server's own towards the kubelets.
	for i, c := range []struct{ name, cert, key string }{
		{"admin-cert", filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key")},
		{"kube-apiserver-kubelet-client", files.kubeletClientCert, files.kubeletClientKey},
	} {
		template := &x509.Certificate{
			SerialNumber: big.NewInt(int64(3 + i)),
			Subject:      pkix.Name{CommonName: c.name, Organization: []string{"system:masters"}},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		if err := issue(template, ca, caKey, c.cert, c.key); err != nil {
			return err
		}
	}
	token, err := newToken()
	if err != nil {
		return err
	}
	tokens := token + ",admin,admin-uid,\"system:masters\"\n"
	// Each of a cluster's own clients: the file its kubeconfig goes to,
	// its user and its groups.
	type client struct{ file, user, groups string }
	var clients []client
	for _, node := range nodes {
		clients = append(clients, client{"kubeconfig-" + node, "system:node:" + node, "system:nodes"})
	}
	if len(nodes) > 0 {
		for _, component := range []string{"kube-proxy", "kube-scheduler", "kube-controller-manager"} {
			clients = append(clients, client{"kubeconfig-" + component, "system:" + component, ""})
		}
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	for _, c := range clients {
		clientToken, err := newToken()
		if err != nil {
			return err
		}
		tokens += fmt.Sprintf("%s,%s,%s-uid,\"%s\"\n", clientToken, c.user, c.user, c.groups)
		if err := os.WriteFile(filepath.Join(dir, c.file), []byte(kubeconfig(server, caPEM, c.user, clientToken)), 0o600); err != nil {
			return err
		}
	}
	if err := os.WriteFile(files.tokens, []byte(tokens), 0o600); err != nil {
		return err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	if err := writePEM(files.serviceAccountKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "kubeconfig"), []byte(kubeconfig(server, caPEM, "admin", token)), 0o600)
}

// newToken is a random bearer token.
func newToken() (string, error) {
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	return hex.EncodeToString(secret), nil
}

// kubeconfig is a kubeconfig for user with token against server.
func kubeconfig(server string, caPEM []byte, user, token string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kube-testenv
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: %s
  context: {cluster: kube-testenv, user: %s}
current-context: %s
`, server, base64.StdEncoding.EncodeToString(caPEM), user, token, user, user, user)
}

// issue signs template with the CA and writes the certificate and its
// PKCS#8 key.
func issue(template, ca *x509.Certificate, caKey *ecdsa.PrivateKey, certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(certPath, "CERTIFICATE", der); err != nil {
		return err
	}
	return writePEM(keyPath, "PRIVATE KEY", keyDER)
}

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}

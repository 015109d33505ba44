package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveFor runs giftd serve with env (plus a database and credentials)
// until the test ends and returns its public and admin addresses.
func serveFor(t *testing.T, env map[string]string) (public, admin string) {
	t.Helper()
	s := startServe(t, env)
	return s.public, s.admin
}

func TestServe_SlowLorisDoesNotHoldGiftd(t *testing.T) {
	public, _ := serveFor(t, map[string]string{"GIFTD_HTTP_READ_TIMEOUT": "300ms"})
	// Fifty clients that send their headers a byte at a time, slowly.
	var slow []net.Conn
	for range 50 {
		c, err := net.Dial("tcp", public)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("POST /linkv/debit HTTP/1.1\r\nHost: x\r\n")); err != nil {
			t.Fatal(err)
		}
		slow = append(slow, c)
	}
	go func() {
		for range 20 {
			for _, c := range slow {
				c.Write([]byte("X")) //nolint:errcheck // giftd may have closed it, which is the point
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	// A normal client is served meanwhile.
	resp, err := http.Get("http://" + public + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("normal request during the slow-loris: %v %v", resp, err)
	}
	resp.Body.Close()
	// And giftd hangs up on every slow one soon after the read timeout.
	deadline := time.Now().Add(3 * time.Second)
	for i, c := range slow {
		c.SetReadDeadline(deadline) //nolint:errcheck // a failed read below says it all
		buf := make([]byte, 512)
		for {
			_, err := c.Read(buf)
			if err == nil {
				continue // giftd may answer 408 before closing
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("slow connection %d still open 3s later", i)
			}
			break
		}
	}
}

func TestServe_AllowedCIDRs(t *testing.T) {
	post := func(public string) (int, string) {
		resp, err := http.Post("http://"+public+"/linkv/debit", "application/x-www-form-urlencoded", strings.NewReader("app_id=x"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	public, _ := serveFor(t, map[string]string{"GIFTD_ALLOWED_CIDRS": "192.0.2.0/24"})
	if code, body := post(public); code != http.StatusForbidden || !strings.Contains(body, "source not allowed") {
		t.Errorf("from loopback, not allowed: %d %s", code, body)
	}
	// The health probes are not filtered.
	if resp, err := http.Get("http://" + public + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("healthz: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	public, _ = serveFor(t, map[string]string{"GIFTD_ALLOWED_CIDRS": "127.0.0.0/8"})
	if code, body := post(public); code != http.StatusBadRequest {
		t.Errorf("from loopback, allowed: %d %s; want the callback's own 400", code, body)
	}
}

func TestServe_TLS(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	public, _ := serveFor(t, map[string]string{"GIFTD_TLS_CERT": certFile, "GIFTD_TLS_KEY": keyFile})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + public + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("https: %v %v", resp, err)
	}
	resp.Body.Close()
	if resp, err := http.Get("http://" + public + "/healthz"); err == nil && resp.StatusCode == http.StatusOK {
		resp.Body.Close()
		t.Error("plain HTTP answered 200 on the TLS listener")
	}
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "giftd test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// testserver is a tiny program for tests of the local real node (standard library only).
//
//	testserver serve [-addr :8443] [-cert tls.crt -key tls.key]
//	    HTTPS (HTTP without -cert) with /healthz, /hello and /validate, a validating
//	    admission webhook that denies objects whose name starts with "deny-".
//	testserver whoami
//	    With the pod's in-cluster configuration (KUBERNETES_SERVICE_HOST/PORT, the projected
//	    service-account token and CA) asks the apiserver who it is (a SelfSubjectReview) and
//	    prints "whoami: <user> via <host:port>"; exits 1 on failure.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

const serviceAccount = "/var/run/secrets/kubernetes.io/serviceaccount/"

func main() {
	log.SetFlags(log.LstdFlags | log.LUTC)
	log.SetOutput(os.Stdout)
	if len(os.Args) < 2 {
		log.Fatal("usage: testserver serve|whoami [flags]")
	}
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2:])
	case "whoami":
		if err := whoami(); err != nil {
			log.Printf("whoami failed: %v", err)
			os.Exit(1)
		}
	default:
		log.Fatalf("unknown command %q", os.Args[1])
	}
}

func serve(args []string) {
	flags := flag.NewFlagSet("serve", flag.ExitOnError)
	addr := flags.String("addr", ":8443", "listen address")
	cert := flags.String("cert", "", "TLS certificate (PEM); plain HTTP without it")
	key := flags.String("key", "", "TLS private key (PEM)")
	_ = flags.Parse(args)
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("hello from %s to %s", host, r.RemoteAddr)
		_, _ = fmt.Fprintf(w, "hello from %s\n", host)
	})
	mux.HandleFunc("/validate", validate)
	server := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("serving on %s (tls=%t)", *addr, *cert != "")
	var err error
	if *cert != "" {
		err = server.ListenAndServeTLS(*cert, *key)
	} else {
		err = server.ListenAndServe()
	}
	log.Fatal(err)
}

type review struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Request    *reviewRequest `json:"request,omitempty"`
	Response   map[string]any `json:"response,omitempty"`
}

type reviewRequest struct {
	UID    string `json:"uid"`
	Object struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	} `json:"object"`
}

func validate(w http.ResponseWriter, r *http.Request) {
	var in review
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Request == nil {
		http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
		return
	}
	name := in.Request.Object.Metadata.Name
	allowed := !strings.HasPrefix(name, "deny-")
	response := map[string]any{"uid": in.Request.UID, "allowed": allowed}
	if !allowed {
		response["status"] = map[string]any{
			"code":    403,
			"message": "testserver refuses names starting deny-: " + name,
		}
	}
	log.Printf("validate %s allowed=%t", name, allowed)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(review{
		APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview", Response: response,
	})
}

func whoami() error {
	address := net.JoinHostPort(os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT"))
	token, err := os.ReadFile(serviceAccount + "token")
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(serviceAccount + "ca.crt")
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("no certificate in %sca.crt", serviceAccount)
	}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	body := []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)
	request, err := http.NewRequest(http.MethodPost,
		"https://"+address+"/apis/authentication.k8s.io/v1/selfsubjectreviews", bytes.NewReader(body))
	if err != nil {
		return err
	}
	request.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	request.Header.Set("Content-Type", "application/json")
	reply, err := client.Do(request)
	if err != nil {
		return err
	}
	defer reply.Body.Close()
	data, _ := io.ReadAll(reply.Body)
	if reply.StatusCode != http.StatusCreated && reply.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d: %s", address, reply.StatusCode, data)
	}
	var answer struct {
		Status struct {
			UserInfo struct {
				Username string `json:"username"`
			} `json:"userInfo"`
		} `json:"status"`
	}
	if err := json.Unmarshal(data, &answer); err != nil {
		return err
	}
	fmt.Printf("whoami: %s via %s\n", answer.Status.UserInfo.Username, address)
	return nil
}

package peername

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	"github.com/peername/peername/records"
)

// TestServeDNSContacts: PETNAME.contacts.ZONE answers with the records of
// the contact's secured name, follows changes to the contacts file, and an
// unreadable file is SERVFAIL, not NXDOMAIN.
func TestServeDNSContacts(t *testing.T) {
	t.Parallel()
	alice := testIdentity(1)
	auth := alice.Authority().String()
	www := record(t, alice, "www", true, func(r *records.Record) {
		r.Endpoints = []netip.Addr{netip.MustParseAddr("192.0.2.1")}
		r.Services = []records.Service{{Service: "ssh", Proto: "tcp", Port: 22}}
	})
	desk := record(t, alice, "desk", true, func(r *records.Record) {
		r.Endpoints = []netip.Addr{netip.MustParseAddr("192.0.2.9")}
	})
	file := filepath.Join(t.TempDir(), "contacts")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("# petnames\nhelper www." + auth + "\n")
	h := newHandler(t, newMapSearcher(www, desk), t0.Add(time.Minute))
	h.contacts = &contactBook{path: file}
	ask := func(qname string, qtype uint16) (int, *dns.Msg) {
		t.Helper()
		rec := dnstest.NewRecorder(&test.ResponseWriter{})
		code, _ := h.ServeDNS(context.Background(), rec, (&test.Case{Qname: qname, Qtype: qtype}).Msg())
		return code, rec.Msg
	}
	const zone = "peer.alt."
	tests := []struct {
		qname string
		qtype uint16
		rcode int
		want  string // the answer's first RR, "" for none
	}{
		{"helper.contacts." + zone, dns.TypeA, dns.RcodeSuccess, "helper.contacts.peer.alt.\t30\tIN\tA\t192.0.2.1"},
		{"HELPER.Contacts." + zone, dns.TypeA, dns.RcodeSuccess, "HELPER.Contacts.peer.alt.\t30\tIN\tA\t192.0.2.1"}, // the query's case is kept
		{"_ssh._tcp.helper.contacts." + zone, dns.TypeSRV, dns.RcodeSuccess, ""},
		{"nobody.contacts." + zone, dns.TypeA, dns.RcodeNameError, ""},
		{"contacts." + zone, dns.TypeA, dns.RcodeSuccess, ""},
		{"a.b.contacts." + zone, dns.TypeA, dns.RcodeNameError, ""},
	}
	for _, tt := range tests {
		code, m := ask(tt.qname, tt.qtype)
		if code != tt.rcode || m == nil {
			t.Errorf("%s %s: rcode %d, want %d", tt.qname, dns.TypeToString[tt.qtype], code, tt.rcode)
			continue
		}
		switch {
		case tt.want != "" && (len(m.Answer) == 0 || m.Answer[0].String() != tt.want):
			t.Errorf("%s: answer %v, want %s", tt.qname, m.Answer, tt.want)
		case tt.qtype == dns.TypeSRV && code == dns.RcodeSuccess:
			if len(m.Answer) != 1 || m.Answer[0].(*dns.SRV).Port != 22 {
				t.Errorf("%s: answer %v, want the ssh service on port 22", tt.qname, m.Answer)
			}
		case tt.want == "" && tt.qtype != dns.TypeSRV && len(m.Answer) != 0:
			t.Errorf("%s: answer %v, want none", tt.qname, m.Answer)
		}
	}

	// A contact saved while the server runs resolves at once (the file
	// changed size, so it is read again even within one mtime tick).
	write("helper www." + auth + "\nfrontdesk desk." + auth + "\n")
	if code, m := ask("frontdesk.contacts."+zone, dns.TypeA); code != dns.RcodeSuccess || len(m.Answer) != 1 {
		t.Errorf("new contact: rcode %d, answer %v", code, m.Answer)
	}
	// A damaged file is not "no such contact".
	write("helper\n")
	if code, _ := ask("helper.contacts."+zone, dns.TypeA); code != dns.RcodeServerFailure {
		t.Errorf("damaged contacts file: rcode %d, want SERVFAIL", code)
	}
}

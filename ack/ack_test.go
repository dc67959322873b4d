package ack

import (
	"errors"
	"testing"
)

func TestWaitModes(t *testing.T) {
	tk := NewTicket(func(bool) {})
	for _, tc := range []struct {
		name   string
		w      Wait
		inCall bool
		t      *Ticket
	}{
		{"zero", Wait{}, true, nil},
		{"InCall", InCall(), true, nil},
		{"NoWait", NoWait(), false, nil},
		{"Deferred", Deferred(tk), false, tk},
	} {
		if tc.w.InCall() != tc.inCall || tc.w.Ticket() != tc.t {
			t.Errorf("%s: InCall %v, Ticket %p; want %v, %p", tc.name, tc.w.InCall(), tc.w.Ticket(), tc.inCall, tc.t)
		}
	}
}

// TestTicketTellsOnce: onDone runs once, after the caller's Release and the
// last Done, with whether any append failed; a ticket released with nothing
// outstanding reports it to the caller instead.
func TestTicketTellsOnce(t *testing.T) {
	var told []bool
	tk := NewTicket(func(failed bool) { told = append(told, failed) })
	tk.Hold()
	tk.Hold()
	if tk.Release() {
		t.Fatal("released with two appends outstanding")
	}
	tk.Done(errors.New("write failed"))
	if len(told) != 0 {
		t.Fatal("told with an append outstanding")
	}
	tk.Done(nil)
	if len(told) != 1 || !told[0] || !tk.Failed() {
		t.Fatalf("told %v, Failed %v; want one failure", told, tk.Failed())
	}
	tk.Reset()
	if tk.Failed() {
		t.Fatal("a reset ticket is still failed")
	}
	if !tk.Release() {
		t.Fatal("a ticket without appends did not report completion on Release")
	}
	if len(told) != 1 {
		t.Fatalf("onDone ran after a Release that completed: %v", told)
	}
}

package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"giftd/internal/ledger"
	"giftd/internal/partition"
)

// TestAdmin_PartitionedUserRoutesAnswerAsOneServer sends the same requests
// to the per-user admin routes of one server and of a partitioned giftd
// (sender and receiver of one partition): bad input, unknown users and
// debits, replays and reused keys get the same status and error code on
// both, and the app policies still answer 501 partitioned.
func TestAdmin_PartitionedUserRoutesAnswerAsOneServer(t *testing.T) {
	ctx := context.Background()
	econ := ledger.WithEconomy(ledger.Economy{Earnings: true, DefaultShareBP: 5000})
	one := newEnv(t, econ)
	parted, _ := newPartitionedEnv(t, 0, econ)
	var sender, receiver string
	for i := 0; receiver == ""; i++ {
		u := fmt.Sprintf("u%d", i)
		switch {
		case partition.For(u, 2) != 1:
		case sender == "":
			sender = u
		default:
			receiver = u
		}
	}
	for _, e := range []*env{one, parted} {
		e.adm(t, http.MethodPost, "/admin/v1/wallets/"+sender+"/topups", `{"amount":1000,"idempotency_key":"seed"}`)
		for _, id := range []string{"g1", "g2", "g3"} {
			_, err := e.store.Debit(ctx, ledger.Debit{
				Key: ledger.DebitKey{Platform: "linkv", AppID: "app", RequestID: id}, UserID: sender, Gold: 100,
				ExpiresAt: time.Now().Add(time.Hour), Gift: ledger.Gift{ReceiverID: receiver, RoomID: "room", GiftID: "rose", Count: 1},
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := []struct{ method, path, body string }{
		{"GET", "/admin/v1/wallets/" + sender + "/ledger", ""},
		{"GET", "/admin/v1/wallets/" + sender + "/ledger?limit=0", ""},
		{"GET", "/admin/v1/wallets/nobody/ledger", ""},
		{"GET", "/admin/v1/wallets/u%00/ledger", ""},
		{"GET", "/admin/v1/debits/g1", ""},
		{"GET", "/admin/v1/debits/g1?app_id=app", ""},
		{"GET", "/admin/v1/debits/none?app_id=app", ""},
		{"GET", "/admin/v1/debits/g1?app_id=app&platform=other", ""},
		{"POST", "/admin/v1/debits/g1/reversal", `{"app_id":"app"}`},
		{"POST", "/admin/v1/debits/g1/reversal", `{"app_id":"app","idempotency_key":"k1","user_id":"a b"}`},
		{"POST", "/admin/v1/debits/g1/reversal", `{"app_id":"app","idempotency_key":"k1","unknown":1}`},
		{"POST", "/admin/v1/debits/none/reversal", `{"app_id":"app","idempotency_key":"k1"}`},
		{"POST", "/admin/v1/debits/g1/reversal", `{"app_id":"app","idempotency_key":"k1","user_id":"` + receiver + `"}`},
		{"POST", "/admin/v1/debits/g1/reversal", `{"app_id":"app","idempotency_key":"k1"}`},
		{"POST", "/admin/v1/debits/g1/reversal", `{"app_id":"app","idempotency_key":"k1"}`},
		{"POST", "/admin/v1/debits/g1/reversal", `{"app_id":"app","idempotency_key":"k2"}`},
		{"POST", "/admin/v1/debits/g2/reversal", `{"app_id":"app","idempotency_key":"k1"}`},
		{"POST", "/admin/v1/debits/g2/reversal", `{"app_id":"app","idempotency_key":"k3","user_id":"` + sender + `"}`},
		{"POST", "/admin/v1/earnings/" + receiver + "/payouts", `{"amount":"5","idempotency_key":"p1"}`},
		{"POST", "/admin/v1/earnings/nobody/payouts", `{"amount":5,"idempotency_key":"p1"}`},
		{"POST", "/admin/v1/earnings/" + receiver + "/payouts", `{"amount":500,"idempotency_key":"p1"}`},
		{"POST", "/admin/v1/earnings/" + receiver + "/payouts", `{"amount":20,"idempotency_key":"p1"}`},
		{"POST", "/admin/v1/earnings/" + receiver + "/payouts", `{"amount":20,"idempotency_key":"p1"}`},
		{"POST", "/admin/v1/earnings/" + receiver + "/payouts", `{"amount":21,"idempotency_key":"p1"}`},
		{"GET", "/admin/v1/spending/" + sender, ""},
		{"GET", "/admin/v1/spending/u%00", ""},
		{"PUT", "/admin/v1/policies/users/nobody", `{"max_debit":5}`},
		{"PUT", "/admin/v1/policies/users/" + sender, `{"max_debit":-5}`},
		{"PUT", "/admin/v1/policies/users/" + sender, `{"time_zone":"Mars/Olympus"}`},
		{"PUT", "/admin/v1/policies/users/" + sender, `{"max_debit":500,"time_zone":"Asia/Shanghai"}`},
		{"PUT", "/admin/v1/policies/users/" + receiver, `{"suspended_until":"2030-01-01T00:00:00Z"}`},
		{"GET", "/admin/v1/policies/users/" + sender, ""},
		{"GET", "/admin/v1/policies/users/nobody", ""},
		{"GET", "/admin/v1/policies/users/" + sender + "/history", ""},
		{"DELETE", "/admin/v1/policies/users/" + sender, ""},
		{"DELETE", "/admin/v1/policies/users/" + sender, ""},
		{"GET", "/admin/v1/linkv/accounts/" + sender, ""},
		{"POST", "/admin/v1/linkv/wallet-moves", `{"users":[{"user_id":"` + sender + `"}]}`},
	}
	for _, c := range cases {
		a, b := one.adm(t, c.method, c.path, c.body), parted.adm(t, c.method, c.path, c.body)
		if a.code != b.code || a.errCode() != b.errCode() {
			t.Errorf("%s %s %s: one server %d %s; partitioned %d %s", c.method, c.path, c.body, a.code, a.raw, b.code, b.raw)
		}
	}
	if a := parted.adm(t, "GET", "/admin/v1/policies/apps/linkv/app", ""); a.code != http.StatusNotImplemented || a.errCode() != "not_partitioned" {
		t.Errorf("an app policy partitioned: %d %s; want 501 not_partitioned", a.code, a.raw)
	}
}

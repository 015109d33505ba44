package platforms_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"giftd/internal/platforms"
	"giftd/internal/polyvapi"
	"giftd/internal/polyvapi/polyvfake"
)

func polyvPair(t *testing.T) (*polyvfake.Fake, *polyvapi.Client) {
	t.Helper()
	f := polyvfake.New(t, "pvapp", "polyv-secret-never-shown-91c2")
	c, err := polyvapi.New(polyvapi.Config{BaseURL: f.URL, AppID: "pvapp", Secret: "polyv-secret-never-shown-91c2",
		Timeout: 100 * time.Millisecond, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func goodsFile(t *testing.T, body string) platforms.FileGoods {
	t.Helper()
	p := filepath.Join(t.TempDir(), "goods.json")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return platforms.FileGoods(p)
}

func TestSetUpDonations_RoundTrip(t *testing.T) {
	f, c := polyvPair(t)
	f.AddChannel("2149710")
	f.AddChannel("2149711")
	goods, err := goodsFile(t, `[{"goodName":"鲜花","goodImg":"//img/1.png","goodPrice":5},
		{"goodName":"火箭","goodImg":"//img/9.png","goodPrice":100.5,"goodEnabled":"N"}]`).PolyvGoods(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	setup := platforms.DonationSetup{Channels: []string{"2149710", "2149711"},
		QueryPointURL: "https://gifts.example/polyv/points", UpdatePointURL: "https://gifts.example/polyv/points/donate",
		Goods: goods, PointUnit: "金币"}
	rep := platforms.SetUpDonations(context.Background(), c, setup)
	if !rep.OK || len(rep.Channels) != 2 || len(rep.Channels[0].Differences) != 0 {
		t.Fatalf("report %+v", rep)
	}
	s, ch := f.Setting()
	if s.DonatePointEnabled != "Y" || ch["2149710"] != "Y" || ch["2149711"] != "Y" || s.PointUnit != "金币" ||
		len(s.Goods) != 2 || s.Goods[0].Enabled != "Y" {
		t.Fatalf("Polyv holds %+v %v", s, ch)
	}
	// Again: the same settings, the same answer (the job can be rerun).
	if rep := platforms.SetUpDonations(context.Background(), c, setup); !rep.OK {
		t.Fatalf("second run %+v", rep)
	}
}

func TestSetUpDonations_ReportsWhatPolyvKeptOtherwise(t *testing.T) {
	f, c := polyvPair(t)
	f.AddChannel("1")
	f.AlterStored(func(s *polyvapi.PointSetting) {
		s.UpdatePointURL = "http://elsewhere.example/x"
		s.Goods = s.Goods[:1]
	})
	rep := platforms.SetUpDonations(context.Background(), c, platforms.DonationSetup{Channels: []string{"1"},
		QueryPointURL: "https://g/q", UpdatePointURL: "https://g/u",
		Goods: []polyvapi.Good{{Name: "a", Price: "1", Enabled: "Y"}, {Name: "b", Price: "2", Enabled: "Y"}}})
	if rep.OK || len(rep.Channels) != 1 {
		t.Fatalf("report %+v, want differences", rep)
	}
	d := strings.Join(rep.Channels[0].Differences, "\n")
	if !strings.Contains(d, "updatePointUrl") || !strings.Contains(d, "goods: Polyv has 1, want 2") {
		t.Fatalf("differences %q", d)
	}
}

func TestSetUpDonations_ChannelErrorsAreReported(t *testing.T) {
	f, c := polyvPair(t)
	f.AddChannel("1")
	f.Fail("update-point-enabled", polyvfake.Fail500, polyvfake.Fail500, polyvfake.Fail500)
	rep := platforms.SetUpDonations(context.Background(), c, platforms.DonationSetup{Channels: []string{"1", "2"},
		QueryPointURL: "https://g/q", UpdatePointURL: "https://g/u"})
	if rep.OK || rep.Channels[0].Error == "" || !strings.Contains(rep.Channels[1].Error, "channel not found") {
		t.Fatalf("report %+v", rep)
	}
	f.Fail("update-point", polyvfake.Hang, polyvfake.Hang, polyvfake.Hang)
	rep = platforms.SetUpDonations(context.Background(), c, platforms.DonationSetup{Channels: []string{"1"}})
	if rep.OK || !strings.Contains(rep.Error, "update-point") || len(rep.Channels) != 0 {
		t.Fatalf("report %+v: want update-point's failure and no channel touched", rep)
	}
}

func TestParseGoods_RefusesBadGoods(t *testing.T) {
	for _, body := range []string{`{}`, `[{"goodName":"六个字的名字","goodPrice":1}]`, `[{"goodName":"a","goodPrice":1,"extra":1}]`, `[{"goodName":"a","goodPrice":-1}]`} {
		if _, err := platforms.ParseGoods([]byte(body)); err == nil {
			t.Errorf("ParseGoods(%s) accepted", body)
		}
	}
}

package linkv_test

import (
	"crypto/md5"
	"encoding/hex"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"giftd/internal/linkv"
)

// docVector is one signature vector of docs/linkv.md §2: LinkV's example
// request changed by edit, signed under secret giftd-test-secret by rule
// over set.
type docVector struct {
	name string
	edit map[string]string
	set  string // "all" or "eight"
	rule string // "drop-empty", "php" or "keep-empty"
	sign string
}

func docVectors() []docVector {
	gift := map[string]string{"gift_id": "10620", "send_num": "1", "receiver_id": "1431136630483329025",
		"vtype": "1", "resource_id": "16302940574638332063", "empty": ""}
	return []docVector{
		{"1, the example", nil, "all", "drop-empty", "fda4f9769380b93559b4b7d180a606fc"},
		{"1, the example, eight", nil, "eight", "drop-empty", "fda4f9769380b93559b4b7d180a606fc"},
		{"2, top-level gift fields, all", gift, "all", "drop-empty", "ecda1164bcf679197fd33ab1f05a0100"},
		{"2, top-level gift fields, eight", gift, "eight", "drop-empty", "fda4f9769380b93559b4b7d180a606fc"},
		{"3, gold=0, php", map[string]string{"gold": "0"}, "all", "php", "a3b94d75d4ac2a5af17f46bfa196ce2b"},
		{"3, gold=0, drop-empty", map[string]string{"gold": "0"}, "all", "drop-empty", "dc33aeeb3536350437f30bc7b9281447"},
		{"4, user_id=0, php", map[string]string{"user_id": "0"}, "all", "php", "5e790a61d0be6eb23877bff4bebc99aa"},
		{"4, user_id=0, drop-empty", map[string]string{"user_id": "0"}, "all", "drop-empty", "5b1fdd7c1866ff1bda5d6608ebb8ea4f"},
		{"5, empty field, keep-empty", map[string]string{"empty": ""}, "all", "keep-empty", "aedbf576666c462be8cea368763bc3b8"},
		{"5, empty field, drop-empty", map[string]string{"empty": ""}, "all", "drop-empty", "fda4f9769380b93559b4b7d180a606fc"},
	}
}

// docExample is LinkV's example request of docs/linkv.md §1, without sign.
func docExample() map[string]string {
	return map[string]string{
		"app_id":     "LM6000167049877161121920",
		"expriation": "1638156748",
		"gold":       "5",
		"nonce":      "u06au4x31630294348ha2zeb15",
		"reason":     `{"gift_id":"10620","send_num":1,"resource_id":"16302940574638332063","vtype":"1","receiver_id":"1431136630483329025"}`,
		"request_id": "bf612c514beb0712816ee60b708acaa6",
		"type":       "1",
		"user_id":    "19718472",
	}
}

// stringSignTemp writes the string a rule signs, as docs/linkv.md §2 and
// §2.1 describe it, independently of giftd's code.
func stringSignTemp(fields map[string]string, set, rule, secret string) string {
	var names []string
	for k := range fields {
		if k == "sign" {
			continue
		}
		if set == "eight" && !slices.Contains([]string{"app_id", "expriation", "gold", "nonce", "reason", "request_id", "type", "user_id"}, k) {
			continue
		}
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, k := range names {
		v := fields[k]
		if rule == "php" {
			// LinkV's shop-php-sdk Util::genSign: skip what PHP's empty()
			// holds empty, write & after a kept value unless its key is
			// the last one, then &key=.
			if v != "" && v != "0" {
				b.WriteString(k + "=" + v)
				if i < len(names)-1 {
					b.WriteString("&")
				}
			}
			continue
		}
		if rule == "drop-empty" && v == "" {
			continue
		}
		b.WriteString(k + "=" + v + "&")
	}
	if rule == "php" {
		b.WriteString("&")
	}
	return b.String() + "key=" + secret
}

// TestDocs_LinkVVectors holds docs/linkv.md to its signature vectors: each
// digest is on the page, matches an independent computation of the rule it
// names, and those of the drop-empty rule (forms all and eight) are
// accepted by giftd's Verify.
func TestDocs_LinkVVectors(t *testing.T) {
	raw, err := os.ReadFile("../../docs/linkv.md")
	if err != nil {
		t.Fatal(err)
	}
	page := string(raw)
	const secret = "giftd-test-secret"
	first := stringSignTemp(docExample(), "all", "drop-empty", secret)
	if !strings.Contains(page, first) {
		t.Errorf("docs/linkv.md lacks vector 1's stringSignTemp %s", first)
	}
	if !strings.Contains(page, "&type=1&&key=giftd-test-secret") {
		t.Errorf("docs/linkv.md lacks the trailing && of the PHP vector")
	}
	for _, v := range docVectors() {
		t.Run(v.name, func(t *testing.T) {
			f := docExample()
			for k, val := range v.edit {
				f[k] = val
			}
			if !strings.Contains(page, v.sign) {
				t.Errorf("docs/linkv.md lacks %s", v.sign)
			}
			sum := md5.Sum([]byte(stringSignTemp(f, v.set, v.rule, secret)))
			if got := hex.EncodeToString(sum[:]); got != v.sign {
				t.Errorf("%s over %s: computed %s, docs/linkv.md says %s", v.rule, v.set, got, v.sign)
			}
			if v.rule == "drop-empty" {
				if _, ok := linkv.Verify(f, v.sign, []string{secret}); !ok {
					t.Errorf("Verify refuses %s, a vector of docs/linkv.md", v.sign)
				}
			}
		})
	}
}

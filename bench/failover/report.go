package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"
)

type reportData struct {
	cfg                        config
	phases                     []*phase
	rows                       []row
	final                      *node
	dbURL                      string
	settings, monitorGUCs      string
	audit                      string
	auditErr                   error
	elapsed                    time.Duration
	loadAvgStart, loadAvgAfter string
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			_, v, _ := strings.Cut(l, ":")
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func version(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func report(w io.Writer, d reportData) {
	cfg := d.cfg
	bin, _ := pgBinDir()
	fmt.Fprintf(w, "\n## giftd failover run, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "machine:   %d cores (%s), load average %s before, %s after; shared with other work, so timings are noisy\n",
		runtime.NumCPU(), cpuModel(), d.loadAvgStart, d.loadAvgAfter)
	fmt.Fprintf(w, "software:  %s; %s\n", version("pg_autoctl", "version"), version(bin+"/postgres", "--version"))
	fmt.Fprintf(w, "formation: monitor + 2 data nodes on 127.0.0.1 (--auth trust --no-ssl), final primary %s\n", d.final.name)
	fmt.Fprintf(w, "monitor:   %s\n", d.monitorGUCs)
	for _, l := range strings.Split(strings.TrimSpace(d.settings), "\n") {
		fmt.Fprintf(w, "           %s\n", l)
	}
	fmt.Fprintf(w, "giftd:     %s\n", or(cfg.label, cfg.giftd))
	fmt.Fprintf(w, "           DATABASE_URL=%s; GIFTD_DB_TIMEOUT=%s, GIFTD_BATCH_MAX=%s; one process, never restarted\n",
		d.dbURL, or(os.Getenv("GIFTD_DB_TIMEOUT"), "2s (default)"), or(os.Getenv("GIFTD_BATCH_MAX"), "default"))
	fmt.Fprintf(w, "load:      %d LinkV-like callers, %s pause between debits, %d wallets per fault; %s\n",
		cfg.workers, cfg.pause, cfg.wallets, cfg.policy)
	fmt.Fprintf(w, "phases:    %s of load, the fault, the wait for primary + secondary, %s more load; standby kept down %s, lost primary %s after the promotion\n\n",
		cfg.warmup, cfg.settle, cfg.standbyDown, cfg.primaryExtra)

	fmt.Fprintln(w, "| fault | requests | 200s | lost | doubled | failed | failed, yet debited | attempts | 500s | no answer | longest window without a 200 | seconds under 1/10 of the pre-fault rate | recovered by itself |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
	for i, p := range d.phases {
		r := d.rows[i]
		doubled := fmt.Sprint(r.doubled)
		if r.extraGold > 0 {
			doubled += fmt.Sprintf(" (+%d gold)", r.extraGold)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %s | %d | %d | %d | %d | %d | %.1f s (+%.1f to +%.1f s) | %d s (of %.0f/s) | %s |\n",
			p.name, r.requests, r.oks, r.lost, doubled, r.failed, r.failedDebited,
			r.attempts, r.s500s, r.noAnswers, r.gap.Seconds(), r.gapAt, r.firstOK, r.slow, r.rate, yesNo(r.recovered))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "lost: answered 200 but not in the final primary's ledger (or with another user or gold).")
	fmt.Fprintln(w, "doubled: more than one debit entry for a request id, or a wallet short of its top-up minus its debited requests.")
	fmt.Fprintln(w, "failed: never answered 200 within the retries; 'failed, yet debited': of those, debited all the same")
	fmt.Fprintln(w, "(LinkV gives up on the gift, the viewer's gold is taken). Window times are seconds after the fault began;")
	fmt.Fprintln(w, "the pre-fault rate is the 200s per second of the warm-up; recovered by itself: 200s at 3/10 of it or more in")
	fmt.Fprintln(w, "the last 3 s of load, with giftd never restarted. Commits released without the standby's ack: PostgreSQL's")
	fmt.Fprintln(w, "warning \"might not have been replicated to the standby\" in the data nodes' logs during the fault.")
	fmt.Fprintln(w)
	for i, p := range d.phases {
		r := d.rows[i]
		fmt.Fprintf(w, "%s (readyz at the end: %d; commits PostgreSQL released without the standby's ack: %d)", p.name, p.ready, p.unreplicated)
		if len(r.finals) > 0 {
			var parts []string
			keys := make([]int, 0, len(r.finals))
			for k := range r.finals {
				keys = append(keys, k)
			}
			sort.Ints(keys)
			for _, k := range keys {
				name := fmt.Sprint(k)
				if k == 0 {
					name = "no answer"
				}
				parts = append(parts, fmt.Sprintf("%d × %s", r.finals[k], name))
			}
			fmt.Fprintf(w, "; last answer of the failed: %s", strings.Join(parts, ", "))
		}
		if r.extraGold > 0 {
			fmt.Fprintf(w, "; %d gold taken beyond the debited requests", r.extraGold)
		}
		fmt.Fprintln(w, ":")
		for _, e := range p.events {
			fmt.Fprintf(w, "  %s\n", e)
		}
		if r.lost > 0 {
			var how []string
			for k, v := range r.lostHow {
				how = append(how, fmt.Sprintf("%d × %q", v, k))
			}
			sort.Strings(how)
			fmt.Fprintf(w, "  LOST %d: giftd logged their 200 as %s (\"replay\": a retry found the record of an attempt answered 500)\n",
				r.lost, strings.Join(how, ", "))
		}
		for _, l := range r.lostSample {
			fmt.Fprintf(w, "  LOST %s\n", l)
		}
	}
	fmt.Fprintf(w, "\ngiftd audit on the final primary (through the multi-host URL):\n%s", indent(d.audit))
	if d.auditErr != nil {
		fmt.Fprintf(w, "  (giftd audit: %v)\n", d.auditErr)
	}
	fmt.Fprintf(w, "\nrun took %s\n", d.elapsed.Round(time.Second))
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

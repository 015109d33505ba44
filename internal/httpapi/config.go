package httpapi

import (
	"context"
	"log/slog"
	"net/http"

	"giftd/internal/ledger"
)

// Configuration on every partition (docs/scale-out.md#configuration-on-every-partition).

// driftHeader names, on a partitioned read of configuration, the
// partitions whose copy of it is not the home's (partition 0's, which the
// answer is): "gifts: partition 1 differs; …". Absent when they agree.
const driftHeader = "Giftd-Config-Drift"

// partitionAware wraps an admin route that works partitioned through the
// partitions' own connections: without them (a Store made without
// ledger.WithPartitionStores) it answers 501 as singleServerOnly does.
func (d Deps) partitionAware(h http.HandlerFunc) http.HandlerFunc {
	if d.Store == nil || d.Store.Partitions() == 0 || len(d.Store.PartitionStores()) > 0 {
		return h
	}
	return d.singleServerOnly(h)
}

// withDrift wraps a read of configuration of kind: partitioned, it
// compares the partitions first and names those that disagree in the
// driftHeader (the answer is still the home's).
func withDrift(store *ledger.Store, kind string, h http.HandlerFunc) http.HandlerFunc {
	if store == nil || store.Partitions() == 0 {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		drift, err := store.ConfigDrift(ctx, kind)
		cancel()
		if err == nil && len(drift) > 0 {
			w.Header().Set(driftHeader, ledger.DriftText(drift))
		}
		h(w, r)
	}
}

// handleConfigDrift answers which partitions' configuration is not the
// home's: 200 with an empty list when they all agree.
func handleConfigDrift(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if store.Partitions() == 0 {
			writeError(w, http.StatusNotFound, "not_partitioned", "only in partitioned mode: one database has nothing to compare")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), adminTimeout)
		defer cancel()
		drift, err := store.ConfigDrift(ctx)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		if drift == nil {
			drift = []ledger.Drift{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"agree": len(drift) == 0, "drift": drift})
	}
}

// handleConfigSync copies the home's configuration to every partition
// again: 200 when every copy succeeded, 503 with the keys that failed.
func handleConfigSync(store *ledger.Store, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if store.Partitions() == 0 {
			writeError(w, http.StatusNotFound, "not_partitioned", "only in partitioned mode: one database has nothing to compare")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), auditTimeout)
		defer cancel()
		rep, err := store.SyncConfig(ctx)
		if err != nil {
			writeLedgerError(w, log, err)
			return
		}
		status := http.StatusOK
		if len(rep.Failed) > 0 {
			status = http.StatusServiceUnavailable
		}
		log.Info("configuration synced", "keys", rep.Keys, "failed", len(rep.Failed))
		writeJSON(w, status, rep)
	}
}

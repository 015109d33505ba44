// Package webhook delivers giftd's events to merchants' endpoints as
// Standard Webhooks (https://www.standardwebhooks.com/): signed, in order
// per endpoint, at least once, each with a stable webhook-id.
package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// SecretPrefix starts every signing secret; base64 of the key bytes follows.
const SecretPrefix = "whsec_"

// NewSecret returns a new random signing secret: whsec_ and 32 bytes in base64.
func NewSecret() string {
	b := make([]byte, 32)
	rand.Read(b) //nolint:errcheck // crypto/rand.Read never fails (Go 1.24+)
	return SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// secretKey returns the HMAC key of a whsec_ secret.
func secretKey(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil || !strings.HasPrefix(secret, SecretPrefix) || len(key) < 24 {
		return nil, errors.New("not a whsec_ secret with at least 24 bytes in base64")
	}
	return key, nil
}

// Signature returns the webhook-signature header of one delivery: a
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>" per secret, separated by
// spaces, so that a receiver that knows any of them accepts it (rotation).
func Signature(secrets []string, id string, timestamp int64, body []byte) (string, error) {
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		key, err := secretKey(s)
		if err != nil {
			return "", err
		}
		sigs = append(sigs, "v1,"+sign(key, id, timestamp, body))
	}
	return strings.Join(sigs, " "), nil
}

func sign(key []byte, id string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%d.", id, timestamp)
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

package platforms

import (
	"context"

	"giftd/internal/ledger"
	"giftd/internal/linkvapi"
)

// LinkAccount asks LinkV (thGetToken) for userID's live_open_id and
// live_token, with the profile fields given, and saves the open id, which
// LinkV's wallet APIs need later. The token is returned, never stored or
// logged: it is the user's credential for LinkV's SDK. It returns LinkV's
// *linkvapi.Error, or the store's error when the open id cannot be saved
// (then the app should call again: thGetToken answers the same open id).
func LinkAccount(ctx context.Context, c *linkvapi.Client, store *ledger.Store, userID string, p linkvapi.Profile) (linkvapi.Token, error) {
	tok, err := c.GetToken(ctx, userID, p)
	if err != nil {
		return linkvapi.Token{}, err
	}
	if err := store.SaveLinkVAccount(ctx, c.AppID(), userID, tok.OpenID); err != nil {
		return linkvapi.Token{}, err
	}
	return tok, nil
}

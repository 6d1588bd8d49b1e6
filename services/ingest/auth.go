package ingest

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
)

// Roles an API key can have.
const (
	roleSync  = "sync"
	roleAdmin = "admin"
)

// keyring holds the SHA-256 of each key, so that comparisons are of equal
// length and constant time, and keys are never kept in clear.
type keyring struct {
	sync, admin [][32]byte
}

func newKeyring(syncKeys, adminKeys []string) *keyring {
	k := &keyring{}
	for _, s := range syncKeys {
		k.sync = append(k.sync, sha256.Sum256([]byte(s)))
	}
	for _, s := range adminKeys {
		k.admin = append(k.admin, sha256.Sum256([]byte(s)))
	}
	return k
}

// role returns the role of key, or "" for an unknown key. Every stored key
// is compared, so the time taken does not depend on which one matches.
func (k *keyring) role(key string) string {
	if key == "" {
		return ""
	}
	h := sha256.Sum256([]byte(key))
	var isSync, isAdmin int
	for _, s := range k.sync {
		isSync |= subtle.ConstantTimeCompare(h[:], s[:])
	}
	for _, a := range k.admin {
		isAdmin |= subtle.ConstantTimeCompare(h[:], a[:])
	}
	switch {
	case isAdmin == 1:
		return roleAdmin
	case isSync == 1:
		return roleSync
	}
	return ""
}

// authMiddleware enforces the role each operation declares in its metadata:
// 401 without a valid X-API-Key, 403 for a sync key on an admin operation.
// Admin keys may call sync operations too.
func authMiddleware(api huma.API, keys *keyring) func(huma.Context, func(huma.Context)) {
	return func(ctx huma.Context, next func(huma.Context)) {
		need, _ := ctx.Operation().Metadata["role"].(string)
		if need == "" {
			next(ctx)
			return
		}
		switch keys.role(ctx.Header("X-API-Key")) {
		case "":
			ctx.SetHeader("WWW-Authenticate", `APIKey header="X-API-Key"`)
			_ = huma.WriteErr(api, ctx, http.StatusUnauthorized, "missing or invalid X-API-Key header")
		case roleSync:
			if need == roleAdmin {
				_ = huma.WriteErr(api, ctx, http.StatusForbidden, "this operation needs an admin key (RECORDSYNC_ADMIN_KEYS); the key given is a sync key")
				return
			}
			next(ctx)
		default:
			next(ctx)
		}
	}
}

package bus

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// TestExternalNATSWithCreds: a NATS in operator mode (decentralized JWT
// auth, as nsc sets it up) takes tokencast with --nats-creds, a user's JWT
// and seed in one file, and refuses it without them.
func TestExternalNATSWithCreds(t *testing.T) {
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	operator, err := nkeys.CreateOperator()
	must(err)
	operatorPub, err := operator.PublicKey()
	must(err)
	operatorJWT, err := jwt.NewOperatorClaims(operatorPub).Encode(operator)
	must(err)
	operatorClaims, err := jwt.DecodeOperatorClaims(operatorJWT)
	must(err)

	newAccount := func(jetStream bool) (nkeys.KeyPair, string, string) {
		kp, err := nkeys.CreateAccount()
		must(err)
		pub, err := kp.PublicKey()
		must(err)
		claims := jwt.NewAccountClaims(pub)
		if jetStream {
			claims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		token, err := claims.Encode(operator)
		must(err)
		return kp, pub, token
	}
	_, systemPub, systemJWT := newAccount(false)
	account, accountPub, accountJWT := newAccount(true)

	user, err := nkeys.CreateUser()
	must(err)
	userPub, err := user.PublicKey()
	must(err)
	userJWT, err := jwt.NewUserClaims(userPub).Encode(account)
	must(err)
	seed, err := user.Seed()
	must(err)
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	must(err)
	credsFile := filepath.Join(t.TempDir(), "tokencast.creds")
	must(os.WriteFile(credsFile, creds, 0o600))

	resolver := &server.MemAccResolver{}
	must(resolver.Store(systemPub, systemJWT))
	must(resolver.Store(accountPub, accountJWT))
	url := startExternalNATS(t, func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{operatorClaims}
		o.AccountResolver = resolver
		o.SystemAccount = systemPub
	})

	b, err := openExternal(t, Config{DataDir: t.TempDir(), URLs: url, CredsFile: credsFile}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	works(t, b)

	_, err = openExternal(t, Config{DataDir: t.TempDir(), URLs: url}, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		t.Fatalf("Open without the creds: %v, want an authorization violation", err)
	}
}

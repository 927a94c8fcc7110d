// Package config reads tokencast's settings: flags first, then TOKENCAST_*
// environment variables, then defaults that run out of the box.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Config is every setting of `tokencast serve`, grouped by the component it
// configures so that each part receives its own settings.
type Config struct {
	Server    Server
	Log       Log
	Auth      Auth
	Limits    Limits
	Streams   Streams
	Dialects  Dialects
	NATS      NATS
	Worker    Worker
	Providers Providers

	// Getenv reads the environment the server was started with: providers
	// take their settings from the variables their users already set.
	Getenv func(string) string
}

// EnvName is the environment variable that sets a flag.
func EnvName(flagName string) string {
	return "TOKENCAST_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse reads args (after the subcommand) and the environment. It returns
// flag.ErrHelp, having printed usage to out, when help was asked for.
func Parse(args []string, getenv func(string) string, out io.Writer) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet("tokencast serve", flag.ContinueOnError)
	fs.SetOutput(out)
	// --help lists the flags sorted by name, so the order here is free.
	c.Server.flags(fs)
	c.Log.flags(fs)
	c.Auth.flags(fs)
	c.Limits.flags(fs)
	c.Streams.flags(fs)
	c.Dialects.flags(fs)
	c.NATS.flags(fs)
	c.Worker.flags(fs)
	c.Providers.flags(fs)
	fs.Usage = func() { usage(fs, out) }
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := setFromEnv(fs, getenv); err != nil {
		return nil, err
	}
	c.Getenv = getenv
	c.Auth.secrets(getenv)
	return c, c.validate()
}

// setFromEnv sets every flag not given on the command line from its
// environment variable, if that is set.
func setFromEnv(fs *flag.FlagSet, getenv func(string) string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v := getenv(EnvName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", EnvName(f.Name), err))
			}
		}
	})
	return errors.Join(errs...)
}

// usage prints --help: every flag with its environment variable and
// default, then the secrets only the environment sets.
func usage(fs *flag.FlagSet, out io.Writer) {
	fmt.Fprintf(out, "Usage: tokencast [serve] [flags]\n\nServes the GraphQL API with embedded NATS and the demo model.\nEvery flag can also be set by the environment variable shown; a flag wins.\nOther commands: chat, bench, usage, version (\"tokencast help\" lists them).\n\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) {
		fmt.Fprintf(out, "  --%s (env %s, default %q)\n        %s\n", f.Name, EnvName(f.Name), f.DefValue, f.Usage)
	})
	fmt.Fprintf(out, "\nSecrets (environment only):\n"+
		"  TOKENCAST_API_KEYS      comma-separated client keys, each name:secret or secret (16+ chars);\n"+
		"                          clients send one as x-api-key. None set: open development mode, loopback only.\n"+
		"  TOKENCAST_PUBLIC_KEYS   client keys, as above, that are public by design (embedded in a browser app,\n"+
		"                          like an AppSync API key): their ask rate and connection caps count per client\n"+
		"                          address (see --trusted-proxies), not for the key as a whole.\n"+
		"  TOKENCAST_SERVICE_KEYS  comma-separated service keys, allowed to publish with sendMessage.\n"+
		"  TOKENCAST_SIGV4_KEYS    comma-separated ACCESS_KEY_ID:SECRET pairs; requests signed with one\n"+
		"                          (SigV4, service appsync) are services, as with a service key.\n")
}

// commaList is a flag holding a comma-separated list; blank items are
// dropped, and setting it again replaces the list.
type commaList []string

func (l *commaList) String() string { return strings.Join(*l, ",") }

func (l *commaList) Set(v string) error {
	*l = nil
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			*l = append(*l, item)
		}
	}
	return nil
}

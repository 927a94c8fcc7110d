// Command composecheck validates a Compose file the way `docker compose
// config` does, without a Docker engine: compose-go (the loader of the
// docker compose CLI) checks it against the Compose specification's schema,
// resolves anchors, merges and interpolation, and checks references between
// services, networks and volumes.
//
//	go run . ../compose.yaml
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: composecheck compose.yaml")
		os.Exit(2)
	}
	if err := check(context.Background(), os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "composecheck:", err)
		os.Exit(1)
	}
}

func check(ctx context.Context, file string) error {
	abs, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	opts, err := cli.NewProjectOptions([]string{abs},
		cli.WithOsEnv,
		cli.WithWorkingDirectory(filepath.Dir(abs)),
		cli.WithResolvedPaths(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		return err
	}
	project, err := opts.LoadProject(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	for _, name := range project.ServiceNames() {
		s := project.Services[name]
		if s.Image == "" && s.Build == nil {
			return fmt.Errorf("service %s has neither image nor build", name)
		}
	}
	fmt.Printf("%s: valid; services %v\n", file, project.ServiceNames())
	return nil
}

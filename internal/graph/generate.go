// Package graph holds the GraphQL schema, gqlgen's generated executor and the
// resolvers that connect it to the bus.
package graph

//go:generate go tool gqlgen generate --config gqlgen.yml

package graph

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
)

// Limits bound what one GraphQL operation may ask of the server.
type Limits struct {
	MaxDepth      int
	MaxAliases    int
	MaxComplexity int
	// Introspection is allowed only in development mode.
	Introspection bool
}

// Extensions returns the gqlgen extensions that enforce the limits; every
// transport (POST, SSE, WebSocket) uses the same ones.
func (l Limits) Extensions() []graphql.HandlerExtension {
	exts := []graphql.HandlerExtension{shapeLimit{l}}
	if l.MaxComplexity > 0 {
		exts = append(exts, extension.FixedComplexityLimit(l.MaxComplexity))
	}
	if l.Introspection {
		exts = append(exts, extension.Introspection{})
	}
	return exts
}

// shapeLimit rejects deep and alias-heavy documents before they are
// validated: validation of overlapping fields grows with the square of the
// field count, so the check must come first and be linear.
type shapeLimit struct{ Limits }

func (shapeLimit) ExtensionName() string                          { return "ShapeLimit" }
func (shapeLimit) Validate(schema graphql.ExecutableSchema) error { return nil }

func (l shapeLimit) MutateOperationParameters(ctx context.Context, params *graphql.RawParams) *gqlerror.Error {
	doc, err := parser.ParseQuery(&ast.Source{Input: params.Query})
	if err != nil {
		return nil // the executor reports syntax errors itself
	}
	frags := map[string]*ast.FragmentDefinition{}
	for _, f := range doc.Fragments {
		frags[f.Name] = f
	}
	aliases := 0
	var depth func(sel ast.SelectionSet, seen map[string]bool) int
	depth = func(sel ast.SelectionSet, seen map[string]bool) int {
		deepest := 0
		for _, s := range sel {
			d := 0
			switch s := s.(type) {
			case *ast.Field:
				if s.Alias != "" && s.Alias != s.Name {
					aliases++
				}
				d = 1 + depth(s.SelectionSet, seen)
			case *ast.InlineFragment:
				d = depth(s.SelectionSet, seen)
			case *ast.FragmentSpread:
				if f := frags[s.Name]; f != nil && !seen[s.Name] {
					seen[s.Name] = true
					d = depth(f.SelectionSet, seen)
					delete(seen, s.Name)
				}
			}
			deepest = max(deepest, d)
		}
		return deepest
	}
	for _, op := range doc.Operations {
		if d := depth(op.SelectionSet, map[string]bool{}); l.MaxDepth > 0 && d > l.MaxDepth {
			return limitError("query is nested deeper than the server allows", "QUERY_TOO_DEEP")
		}
	}
	if l.MaxAliases > 0 && aliases > l.MaxAliases {
		return limitError("query uses more aliases than the server allows", "TOO_MANY_ALIASES")
	}
	return nil
}

func limitError(message, code string) *gqlerror.Error {
	return &gqlerror.Error{Message: message, Extensions: map[string]any{"code": code}}
}

package graph

import (
	"context"
	"time"

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
	// MaxFields bounds the fields an operation selects with its fragments
	// expanded, aliased or not, and the fields its document writes.
	MaxFields int
	// Introspection is allowed only in development mode.
	Introspection bool
	// Suggestions ("Did you mean …?") in validation errors name schema
	// fields and types: development mode only.
	Suggestions bool
	// OperationTimeout bounds how long a query or mutation may run; its
	// resolvers' context ends then, as it does when the client leaves.
	OperationTimeout time.Duration
}

// Extensions returns the gqlgen extensions that enforce the limits; every
// transport (POST, SSE, WebSocket) uses the same ones.
func (l Limits) Extensions() []graphql.HandlerExtension {
	exts := []graphql.HandlerExtension{shapeLimit{l}}
	if l.OperationTimeout > 0 {
		exts = append(exts, deadline{l.OperationTimeout})
	}
	if l.MaxComplexity > 0 {
		exts = append(exts, extension.FixedComplexityLimit(l.MaxComplexity))
	}
	if l.Introspection {
		exts = append(exts, extension.Introspection{})
	}
	return exts
}

// shapeLimit rejects deep, wide and alias-heavy documents before they are
// validated: validation of overlapping fields grows with the square of the
// field count, and fragments spreading fragments multiply it, so the check
// must come first and be linear in the document. Each fragment is measured
// once, whatever number of times it is spread.
type shapeLimit struct{ Limits }

func (shapeLimit) ExtensionName() string                          { return "ShapeLimit" }
func (shapeLimit) Validate(schema graphql.ExecutableSchema) error { return nil }

// size is what a selection set costs once every fragment in it is expanded;
// counts saturate instead of overflowing.
type size struct {
	depth, fields, aliases int
}

func (a size) add(b size) size {
	return size{depth: max(a.depth, b.depth), fields: satAdd(a.fields, b.fields), aliases: satAdd(a.aliases, b.aliases)}
}

const saturated = 1 << 40

func satAdd(a, b int) int { return min(a+b, saturated) }

func (l shapeLimit) MutateOperationParameters(ctx context.Context, params *graphql.RawParams) *gqlerror.Error {
	doc, err := parser.ParseQuery(&ast.Source{Input: params.Query})
	if err != nil {
		return nil // the executor reports syntax errors itself
	}
	m := measurer{frags: map[string]*ast.FragmentDefinition{}, sizes: map[string]size{}, busy: map[string]bool{}}
	for _, f := range doc.Fragments {
		m.frags[f.Name] = f
	}
	for _, op := range doc.Operations {
		sz := m.measure(op.SelectionSet)
		switch {
		case l.MaxDepth > 0 && sz.depth > l.MaxDepth:
			return limitError("query is nested deeper than the server allows", "QUERY_TOO_DEEP")
		case l.MaxAliases > 0 && sz.aliases > l.MaxAliases:
			return limitError("query uses more aliases than the server allows", "TOO_MANY_ALIASES")
		case l.MaxFields > 0 && sz.fields > l.MaxFields:
			return limitError("query selects more fields than the server allows", "TOO_MANY_FIELDS")
		}
	}
	// The document as written, fragments counted once: bounds the work of
	// validation rules that look at every fragment, used or not.
	if l.MaxFields > 0 && writtenFields(doc) > l.MaxFields {
		return limitError("query selects more fields than the server allows", "TOO_MANY_FIELDS")
	}
	return nil
}

// measurer sizes selection sets with each fragment's size computed once.
type measurer struct {
	frags map[string]*ast.FragmentDefinition
	sizes map[string]size
	busy  map[string]bool // fragments being measured: a cycle counts nothing (validation refuses it)
}

func (m *measurer) measure(sel ast.SelectionSet) size {
	var total size
	for _, s := range sel {
		switch s := s.(type) {
		case *ast.Field:
			sub := m.measure(s.SelectionSet)
			f := size{depth: 1 + sub.depth, fields: satAdd(1, sub.fields), aliases: sub.aliases}
			if s.Alias != "" && s.Alias != s.Name {
				f.aliases = satAdd(f.aliases, 1)
			}
			total = total.add(f)
		case *ast.InlineFragment:
			total = total.add(m.measure(s.SelectionSet))
		case *ast.FragmentSpread:
			total = total.add(m.fragment(s.Name))
		}
	}
	return total
}

func (m *measurer) fragment(name string) size {
	if sz, ok := m.sizes[name]; ok {
		return sz
	}
	f := m.frags[name]
	if f == nil || m.busy[name] {
		return size{}
	}
	m.busy[name] = true
	sz := m.measure(f.SelectionSet)
	delete(m.busy, name)
	m.sizes[name] = sz
	return sz
}

// writtenFields counts the fields written in a document, each fragment once.
func writtenFields(doc *ast.QueryDocument) int {
	var count func(sel ast.SelectionSet) int
	count = func(sel ast.SelectionSet) int {
		n := 0
		for _, s := range sel {
			switch s := s.(type) {
			case *ast.Field:
				n += 1 + count(s.SelectionSet)
			case *ast.InlineFragment:
				n += count(s.SelectionSet)
			}
		}
		return n
	}
	n := 0
	for _, op := range doc.Operations {
		n += count(op.SelectionSet)
	}
	for _, f := range doc.Fragments {
		n += count(f.SelectionSet)
	}
	return n
}

func limitError(message, code string) *gqlerror.Error {
	return Refusal(code, message)[0]
}

// deadline gives every query and mutation a context that ends after d.
// A subscription is not bounded: it lasts as long as its client stays.
type deadline struct{ d time.Duration }

var _ graphql.OperationInterceptor = deadline{}

func (deadline) ExtensionName() string                          { return "OperationDeadline" }
func (deadline) Validate(schema graphql.ExecutableSchema) error { return nil }

func (l deadline) InterceptOperation(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
	if op := graphql.GetOperationContext(ctx).Operation; op != nil && op.Operation == ast.Subscription {
		return next(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, l.d)
	respond := next(ctx)
	return func(ctx context.Context) *graphql.Response {
		resp := respond(ctx)
		cancel() // a query or mutation answers once
		return resp
	}
}

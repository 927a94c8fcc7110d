package graph

import (
	"encoding/json"
	"net/http"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// post is GraphQL over HTTP POST with a JSON body. GET, form and multipart
// bodies are not served: a cross-site page could send them without a CORS
// preflight.
var post = transport.POST{}

// ServeHTTP answers a GraphQL request POSTed as JSON with one result, on the
// executor every other transport uses. The caller has checked the request's
// method, body and credentials.
func (o *Operations) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A panic outside the resolvers (which the executor recovers) still
	// gets a safe answer, as gqlgen's own handler gives one.
	defer func() {
		if p := recover(); p != nil {
			WriteErrors(w, http.StatusInternalServerError, gqlerror.List{o.presentPanic(r.Context(), p)})
		}
	}()
	if !post.Supports(r) {
		WriteErrors(w, http.StatusBadRequest, gqlerror.List{{Message: "transport not supported"}})
		return
	}
	post.Do(w, r.WithContext(graphql.StartOperationTrace(r.Context())), o.exec)
}

// WriteErrors answers an HTTP request with a GraphQL error response.
func WriteErrors(w http.ResponseWriter, status int, errs gqlerror.List) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": errs})
}

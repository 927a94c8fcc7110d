package graph

import (
	"slices"
	"testing"

	"github.com/tokencast/tokencast/internal/graph/model"
)

func TestConversationPagesByQuestion(t *testing.T) {
	// q1 answered, q2 answered, q3 asked and in progress.
	var turns []*model.Turn
	for _, id := range []string{"q1", "q1", "q2", "q2", "q3", "q3"} {
		turns = append(turns, &model.Turn{RequestID: id})
	}
	str := func(s string) *string { return &s }
	cases := []struct {
		name   string
		last   int
		before *string
		want   []string
		older  bool
	}{
		{"all fit", 100, nil, []string{"q1", "q1", "q2", "q2", "q3", "q3"}, false},
		{"newest one", 1, nil, []string{"q3", "q3"}, true},
		{"newest two", 2, nil, []string{"q2", "q2", "q3", "q3"}, true},
		{"exactly all", 3, nil, []string{"q1", "q1", "q2", "q2", "q3", "q3"}, false},
		{"before the newest", 1, str("q3"), []string{"q2", "q2"}, true},
		{"before the second", 5, str("q2"), []string{"q1", "q1"}, false},
		{"before the first", 5, str("q1"), []string{}, false},
		{"before an unknown question", 5, str("gone"), []string{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			page, older := conversationPage(turns, tc.last, tc.before)
			got := []string{}
			for _, tu := range page {
				got = append(got, tu.RequestID)
			}
			if !slices.Equal(got, tc.want) || older != tc.older {
				t.Fatalf("got %v older=%v, want %v older=%v", got, older, tc.want, tc.older)
			}
		})
	}
}

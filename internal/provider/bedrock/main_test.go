package bedrock

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: a stream
// reader or connection that outlives its answer.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

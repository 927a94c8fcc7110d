package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// This file owns JSON values in KV buckets: reading every value under some
// filters (rollups, open calls), and the read-modify-write of one value,
// compare-and-set on its revision, which the usage rollups and the budget
// counters share: of two writers, one wins and the other reads again.

// getJSON reads key's value into v; its revision, 0 when there is none.
func getJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) (uint64, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return e.Revision(), nil
}

// updateJSON applies change to key's value (the zero T when there is none)
// and writes the result unless change says not to, reading again while
// another writer came first. It reports whether it wrote.
func updateJSON[T any](ctx context.Context, kv jetstream.KeyValue, key string, change func(cur *T) (write bool)) (bool, error) {
	for {
		var cur T
		rev, err := getJSON(ctx, kv, key, &cur)
		if err != nil {
			return false, err
		}
		if !change(&cur) {
			return false, nil
		}
		data, err := json.Marshal(cur)
		if err != nil {
			return false, fmt.Errorf("encode %s: %w", key, err)
		}
		if rev == 0 {
			_, err = kv.Create(ctx, key, data)
		} else {
			_, err = kv.Update(ctx, key, data, rev)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || isWrongSequence(err) {
			continue // another writer came first: read it again
		}
		if err != nil {
			return false, fmt.Errorf("write %s: %w", key, err)
		}
		return true, nil
	}
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// readAllJSON reads the values of every key of kv that matches one of
// filters, each JSON; what names them in errors.
func readAllJSON[T any](ctx context.Context, kv jetstream.KeyValue, what string, filters ...string) ([]T, error) {
	w, err := kv.WatchFiltered(ctx, filters, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	defer func() { _ = w.Stop() }()
	var out []T
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("read %s: %w", what, ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("read %s: the watch ended early", what)
			}
			if e == nil {
				return out, nil // every value there is was sent
			}
			var v T
			if err := json.Unmarshal(e.Value(), &v); err != nil {
				return nil, fmt.Errorf("decode %s %s: %w", what, e.Key(), err)
			}
			out = append(out, v)
		}
	}
}

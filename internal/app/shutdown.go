package app

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"
)

// shutdown stops the server gracefully: readiness turns false and new asks
// and connections are refused, the workers stop taking requests, answers in
// flight may finish until the shutdown timeout and what is left then is
// handed back for another worker, and clients are told to reconnect.
func (s *server) shutdown(ctx context.Context, srv *http.Server, stopPulling, stopWork context.CancelFunc, workersDone <-chan struct{}) error {
	s.stopping.Store(true)
	s.log.Info("shutting down", "timeout", s.cfg.Server.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Server.ShutdownTimeout)
	defer cancel()
	stopPulling()
	var wg sync.WaitGroup
	if s.servesAPI() {
		s.events.Shutdown()
		for _, a := range s.answers {
			a.Shutdown()
		}
		wg.Go(func() { _ = s.ws.Shutdown(sctx) })
	}
	wg.Go(func() { s.finishAnswers(sctx, workersDone, stopWork) })
	s.drain(sctx)
	err := srv.Shutdown(sctx)
	wg.Wait()
	stopWork()
	if errors.Is(err, context.DeadlineExceeded) {
		_ = srv.Close()
		err = nil
	}
	return err
}

// finishAnswers lets the answers in flight finish; what is left at the
// deadline is handed back to another worker.
func (s *server) finishAnswers(sctx context.Context, workersDone <-chan struct{}, stopWork context.CancelFunc) {
	select {
	case <-workersDone:
	case <-sctx.Done():
		s.log.Warn("shutdown timeout: handing unfinished answers back")
		stopWork()
	}
}

// drain keeps the port open for the drain delay, or until the shutdown
// deadline: readiness is false by now, and load balancers need the time to
// notice before the port closes.
func (s *server) drain(sctx context.Context) {
	if s.cfg.Server.DrainDelay <= 0 {
		return
	}
	select {
	case <-time.After(s.cfg.Server.DrainDelay):
	case <-sctx.Done():
	}
}

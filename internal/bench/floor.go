package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// floorServer is the least a push server can do: the fake LLM's tokens go
// straight to the session's WebSocket subscribers, one frame per token, with
// the same WebSocket library as tokencast and no GraphQL, NATS, queue or
// history. tokencast's figures are read as ratios to it.
type floorServer struct {
	llm      *fakeLLM
	upgrader websocket.Upgrader
	srv      *http.Server
	addr     string
	wg       sync.WaitGroup // answers being played

	mu       sync.Mutex
	sessions map[string][]*floorConn
}

type floorConn struct {
	mu sync.Mutex
	ws *websocket.Conn
}

func (c *floorConn) write(data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteMessage(websocket.TextMessage, data)
}

func startFloor(llm *fakeLLM) (*floorServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("floor server: %w", err)
	}
	f := &floorServer{
		llm:      llm,
		addr:     ln.Addr().String(),
		sessions: make(map[string][]*floorConn),
		upgrader: websocket.Upgrader{ReadBufferSize: 512, WriteBufferSize: 512, WriteBufferPool: &sync.Pool{}},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /floor", f.subscribe)
	mux.HandleFunc("POST /ask", f.ask)
	f.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = f.srv.Serve(ln) }()
	return f, nil
}

func (f *floorServer) close() {
	_ = f.srv.Close()
	f.mu.Lock()
	for _, conns := range f.sessions {
		for _, c := range conns {
			c.ws.Close()
		}
	}
	f.sessions = map[string][]*floorConn{}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *floorServer) subscribe(w http.ResponseWriter, r *http.Request) {
	session := r.URL.Query().Get("session")
	ws, err := f.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &floorConn{ws: ws}
	f.mu.Lock()
	f.sessions[session] = append(f.sessions[session], c)
	f.mu.Unlock()
	if err := c.write([]byte(`{"type":"READY"}`)); err != nil {
		ws.Close()
	}
	// Reading is left to gorilla's close handling when the client hangs up;
	// the handler returns and the connection lives in the session map.
	go func() {
		for {
			if _, _, err := ws.NextReader(); err != nil {
				ws.Close()
				return
			}
		}
	}()
}

func (f *floorServer) ask(w http.ResponseWriter, r *http.Request) {
	var req struct{ Session, RequestID, Question string }
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	subs := append([]*floorConn(nil), f.sessions[req.Session]...)
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		index := 0
		send := func(typ, msg string) error {
			data, _ := json.Marshal(Event{Type: typ, RequestID: req.RequestID, Index: &index, Message: msg})
			index++
			for _, c := range subs {
				_ = c.write(data) // a failed subscriber shows up as lost tokens
			}
			return nil
		}
		_ = send("START", "#START_STREAM#")
		_, _ = f.llm.play(context.Background(), req.Question, func(text string) error { return send("DELTA", text) })
		_ = send("END", "#END_STREAM#")
	}()
	w.WriteHeader(http.StatusAccepted)
}

// floorDialect subscribes to the floor server.
type floorDialect struct{ addr string }

func (d *floorDialect) Subscribe(ctx context.Context, session string) (Subscriber, error) {
	u := url.URL{Scheme: "ws", Host: d.addr, Path: "/floor", RawQuery: url.Values{"session": {session}}.Encode()}
	conn, _, err := smallDialer.DialContext(ctx, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("floor dial: %w", err)
	}
	var ready Event
	if err := conn.ReadJSON(&ready); err != nil || ready.Type != "READY" {
		conn.Close()
		return nil, fmt.Errorf("floor subscribe: %v", err)
	}
	return &floorSubscriber{conn: conn}, nil
}

type floorSubscriber struct{ conn *websocket.Conn }

func (s *floorSubscriber) Next() ([]Event, error) {
	_, data, err := s.conn.ReadMessage()
	if err != nil {
		return nil, err
	}
	var ev Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("invalid floor frame %q: %w", data, err)
	}
	return []Event{ev}, nil
}

func (s *floorSubscriber) Close() error { return s.conn.Close() }

// floorAsker starts an answer on the floor server.
type floorAsker struct {
	addr   string
	client *http.Client
}

func (a *floorAsker) ask(ctx context.Context, session, requestID, question string) error {
	body, _ := json.Marshal(map[string]string{"Session": session, "RequestID": requestID, "Question": question})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+a.addr+"/ask", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("floor ask: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("floor ask: HTTP %d", resp.StatusCode)
	}
	return nil
}

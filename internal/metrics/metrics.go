// Package metrics is what tokencast tells Prometheus: answers, time to first
// token, tokens, connections, subscriptions and slow consumers.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tokencast/tokencast/internal/chat"
)

// Metrics holds the collectors of one server.
type Metrics struct {
	reg *prometheus.Registry

	ttft      *prometheus.HistogramVec
	gap       *prometheus.HistogramVec
	conns     *prometheus.GaugeVec
	redeliver prometheus.Counter
	answers   *prometheus.CounterVec
	tokens    *prometheus.CounterVec
	asks      *prometheus.CounterVec
	slow      prometheus.Counter
	published prometheus.Counter
	// usage is nil until CountUsage (usage.go).
	usage *usageCounters
}

// New registers the collectors, with Go runtime and process metrics.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.ttft = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tokencast_ttft_seconds",
		Help:    "Time from a worker taking a request to the model's first token.",
		Buckets: []float64{.05, .1, .25, .5, 1, 2, 3, 5, 10, 20, 30, 60},
	}, []string{"model"})
	m.gap = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tokencast_inter_token_seconds",
		Help:    "Time between two chunks of a model's answer, as the worker received them.",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"model"})
	m.conns = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tokencast_connections",
		Help: "Open streaming connections on this node, by protocol (graphql-transport-ws, graphql-ws, events, sse, aisdk, agui).",
	}, []string{"protocol"})
	m.redeliver = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tokencast_redeliveries_total",
		Help: "Requests taken up again after an earlier attempt died or was handed back.",
	})
	m.answers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokencast_answers_total",
		Help: "Answers by how they ended: END, ERROR or CANCELLED, and the error code.",
	}, []string{"model", "outcome", "code"})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokencast_tokens_total",
		Help: "Tokens reported by the models, by direction (input, output).",
	}, []string{"model", "direction"})
	m.asks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tokencast_asks_total",
		Help: "Questions accepted (code OK) or refused (the GraphQL error code).",
	}, []string{"code"})
	m.slow = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tokencast_slow_consumers_total",
		Help: "Subscribers closed because their outgoing queue overflowed.",
	})
	m.published = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tokencast_events_published_total",
		Help: "Events published by this process's workers.",
	})
	m.reg.MustRegister(m.ttft, m.gap, m.conns, m.redeliver, m.answers, m.tokens, m.asks, m.slow, m.published,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Gauge exposes a value read at scrape time, such as open connections.
func (m *Metrics) Gauge(name, help string, read func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, read))
}

// Handler serves the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// FirstToken records a model's time to first token.
func (m *Metrics) FirstToken(model string, d time.Duration) {
	m.ttft.WithLabelValues(model).Observe(d.Seconds())
}

// Answered records how an answer ended and the tokens it cost.
func (m *Metrics) Answered(model string, outcome chat.EventType, code string, usage chat.Usage) {
	m.answers.WithLabelValues(model, string(outcome), code).Inc()
	if usage.InputTokens > 0 {
		m.tokens.WithLabelValues(model, "input").Add(float64(usage.InputTokens))
	}
	if usage.OutputTokens > 0 {
		m.tokens.WithLabelValues(model, "output").Add(float64(usage.OutputTokens))
	}
}

// Asked records a question accepted ("OK") or refused with a code.
func (m *Metrics) Asked(code string) { m.asks.WithLabelValues(code).Inc() }

// SlowConsumer records a subscriber closed for not keeping up.
func (m *Metrics) SlowConsumer() { m.slow.Inc() }

// Published records an event published.
func (m *Metrics) Published() { m.published.Inc() }

// InterToken records the time between two chunks of an answer.
func (m *Metrics) InterToken(model string, d time.Duration) {
	m.gap.WithLabelValues(model).Observe(d.Seconds())
}

// Connected counts a streaming connection opening (+1) or closing (-1).
func (m *Metrics) Connected(protocol string, delta int) {
	m.conns.WithLabelValues(protocol).Add(float64(delta))
}

// Redelivered records a request taken up again.
func (m *Metrics) Redelivered() { m.redeliver.Inc() }

// Command loadgen drives an HTTP endpoint with pre-built, pre-signed LINE webhook requests and prints a JSON
// summary (requests, status codes, errors, achieved rate, latency percentiles, its own CPU time).
//
// Input: a JSON-lines file, one request per line: {"body": "<base64 of the raw body>", "signature": "..."}.
// The requests are sent in file order and cycled when the file is shorter than the run.
//
// Two modes:
//
//   - closed: -connections workers, each with its own keep-alive connection, send back to back for -duration.
//     Latency is measured per request from send to the end of the response. This finds the maximum throughput.
//   - open: requests are scheduled at a fixed -rate for -duration, whatever the server does (at most
//     -connections connections at once; more requests wait for a free connection). Latency is measured from
//     each request's intended send time, so a stalled server shows up in the latency instead of silently
//     lowering the rate (no coordinated omission).
//
// Standard library only.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type request struct {
	Body      []byte `json:"body"` // base64 in the file
	Signature string `json:"signature"`
}

type result struct {
	start   time.Duration // since the run's start: the send time (closed) or the intended send time (open)
	latency time.Duration
	status  int // 0 when the request failed without an HTTP response
	err     string
}

type config struct {
	url         string
	file        string
	mode        string
	connections int
	rate        float64
	duration    time.Duration
	timeout     time.Duration
	trace       string
}

type latencySummary struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

type summary struct {
	Mode         string         `json:"mode"`
	URL          string         `json:"url"`
	Connections  int            `json:"connections"`
	TargetRate   float64        `json:"target_rps,omitempty"`
	DurationS    float64        `json:"duration_s"`
	ElapsedS     float64        `json:"elapsed_s"`
	Requests     int            `json:"requests"`
	Status       map[string]int `json:"status"`
	Errors       int            `json:"errors"`
	ErrorSamples map[string]int `json:"error_samples,omitempty"`
	AchievedRPS  float64        `json:"achieved_rps"`
	LatencyMS    latencySummary `json:"latency_ms"`
	MaxInFlight  int64          `json:"max_in_flight,omitempty"`
	MaxSendLagMS float64        `json:"max_send_lag_ms,omitempty"`
	CPUUserS     float64        `json:"cpu_user_s"`
	CPUSysS      float64        `json:"cpu_sys_s"`
}

func main() {
	cfg := config{}
	flag.StringVar(&cfg.url, "url", "", "endpoint to POST to (required)")
	flag.StringVar(&cfg.file, "requests", "", "JSON-lines file of {body (base64), signature} (required)")
	flag.StringVar(&cfg.mode, "mode", "closed", "closed (max throughput) or open (fixed rate)")
	flag.IntVar(&cfg.connections, "connections", 64, "closed: concurrent connections; open: at most this many")
	flag.Float64Var(&cfg.rate, "rate", 1000, "open: requests per second")
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to send")
	flag.DurationVar(&cfg.timeout, "timeout", 10*time.Second, "per-request timeout")
	flag.StringVar(&cfg.trace, "trace", "", "also write every request as CSV (start_ms,latency_ms,status) here")
	flag.Parse()
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
}

func run(cfg config) error {
	if cfg.url == "" || cfg.file == "" {
		return errors.New("-url and -requests are required")
	}
	if cfg.connections < 1 || cfg.duration <= 0 {
		return errors.New("-connections must be >= 1 and -duration > 0")
	}
	reqs, err := load(cfg.file)
	if err != nil {
		return err
	}
	client := &http.Client{
		Timeout: cfg.timeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        cfg.connections,
			MaxIdleConnsPerHost: cfg.connections,
			MaxConnsPerHost:     cfg.connections,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
	var results []result
	var elapsed time.Duration
	out := summary{Mode: cfg.mode, URL: cfg.url, Connections: cfg.connections, DurationS: cfg.duration.Seconds()}
	switch cfg.mode {
	case "closed":
		results, elapsed = closedLoop(cfg, reqs, client)
	case "open":
		if cfg.rate <= 0 {
			return errors.New("-rate must be > 0")
		}
		var maxInFlight int64
		var maxLag time.Duration
		results, elapsed, maxInFlight, maxLag = openLoop(cfg, reqs, client)
		out.TargetRate = cfg.rate
		out.MaxInFlight = maxInFlight
		out.MaxSendLagMS = ms(maxLag)
	default:
		return fmt.Errorf("unknown -mode %q (closed or open)", cfg.mode)
	}
	summarize(&out, results, elapsed)
	if cfg.trace != "" {
		if err := writeTrace(cfg.trace, results); err != nil {
			return err
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		out.CPUUserS = float64(ru.Utime.Nano()) / 1e9
		out.CPUSysS = float64(ru.Stime.Nano()) / 1e9
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func load(path string) ([]request, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var reqs []request
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 1<<20), 64<<20)
	for line := 1; scanner.Scan(); line++ {
		text := bytes.TrimSpace(scanner.Bytes())
		if len(text) == 0 {
			continue
		}
		var r request
		if err := json.Unmarshal(text, &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		reqs = append(reqs, r)
	}
	if err := scanner.Err(); err != nil {
		return nil, err
	}
	if len(reqs) == 0 {
		return nil, fmt.Errorf("%s holds no requests", path)
	}
	return reqs, nil
}

func send(client *http.Client, url string, r request) (int, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(r.Body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Line-Signature", r.Signature)
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	// Read the body to the end so the connection goes back to the pool (keep-alive).
	_, copyErr := io.Copy(io.Discard, resp.Body)
	closeErr := resp.Body.Close()
	if copyErr != nil {
		return 0, copyErr
	}
	if closeErr != nil {
		return 0, closeErr
	}
	return resp.StatusCode, nil
}

func writeTrace(path string, results []result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "start_ms,latency_ms,status")
	for _, r := range results {
		fmt.Fprintf(w, "%.3f,%.3f,%d\n", ms(r.start), ms(r.latency), r.status)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newResult(start, latency time.Duration, status int, err error) result {
	r := result{start: start, latency: latency, status: status}
	if err != nil {
		r.err = err.Error()
	}
	return r
}

func closedLoop(cfg config, reqs []request, client *http.Client) ([]result, time.Duration) {
	per := make([][]result, cfg.connections)
	var next atomic.Uint64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(cfg.duration)
	for w := 0; w < cfg.connections; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			local := make([]result, 0, 4096)
			for time.Now().Before(deadline) {
				i := next.Add(1) - 1
				sent := time.Now()
				status, err := send(client, cfg.url, reqs[i%uint64(len(reqs))])
				local = append(local, newResult(sent.Sub(start), time.Since(sent), status, err))
			}
			per[w] = local
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []result
	for _, part := range per {
		all = append(all, part...)
	}
	return all, elapsed
}

func openLoop(cfg config, reqs []request, client *http.Client) ([]result, time.Duration, int64, time.Duration) {
	total := int(math.Round(cfg.rate * cfg.duration.Seconds()))
	results := make([]result, total)
	var inFlight, maxInFlight atomic.Int64
	var maxLag time.Duration
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < total; i++ {
		intended := start.Add(time.Duration(float64(i) * float64(time.Second) / cfg.rate))
		if wait := time.Until(intended); wait > 0 {
			time.Sleep(wait)
		} else if lag := -wait; lag > maxLag {
			maxLag = lag
		}
		wg.Add(1)
		go func(i int, intended time.Time) {
			defer wg.Done()
			n := inFlight.Add(1)
			for {
				seen := maxInFlight.Load()
				if n <= seen || maxInFlight.CompareAndSwap(seen, n) {
					break
				}
			}
			status, err := send(client, cfg.url, reqs[i%len(reqs)])
			// From the intended send time: waiting for a connection or for the scheduler counts too.
			results[i] = newResult(intended.Sub(start), time.Since(intended), status, err)
			inFlight.Add(-1)
		}(i, intended)
	}
	wg.Wait()
	return results, time.Since(start), maxInFlight.Load(), maxLag
}

func summarize(out *summary, results []result, elapsed time.Duration) {
	out.ElapsedS = elapsed.Seconds()
	out.Requests = len(results)
	out.Status = map[string]int{}
	latencies := make([]time.Duration, 0, len(results))
	var sum time.Duration
	for _, r := range results {
		if r.status == 0 {
			out.Errors++
			if out.ErrorSamples == nil {
				out.ErrorSamples = map[string]int{}
			}
			if _, seen := out.ErrorSamples[r.err]; seen || len(out.ErrorSamples) < 5 {
				out.ErrorSamples[r.err]++
			}
			continue
		}
		out.Status[strconv.Itoa(r.status)]++
		latencies = append(latencies, r.latency)
		sum += r.latency
	}
	if elapsed > 0 {
		out.AchievedRPS = float64(len(latencies)) / elapsed.Seconds()
	}
	if len(latencies) == 0 {
		return
	}
	slices.Sort(latencies)
	out.LatencyMS = latencySummary{
		Mean: ms(sum / time.Duration(len(latencies))),
		P50:  ms(percentile(latencies, 50)),
		P90:  ms(percentile(latencies, 90)),
		P99:  ms(percentile(latencies, 99)),
		P999: ms(percentile(latencies, 99.9)),
		Max:  ms(latencies[len(latencies)-1]),
	}
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Millisecond)*1000) / 1000
}

package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Target is the server a load run talks to.
type Target struct {
	// Addr is host:port.
	Addr string
	// TLS, when set, is the client configuration (HTTP/1.1 is forced);
	// nil means plain HTTP.
	TLS *tls.Config
}

// LoadSpec describes one load run. It ends after Duration or MaxRequests
// requests, whichever comes first.
type LoadSpec struct {
	Fleet Fleet
	// Connections is the number of workers, each with its own keep-alive
	// connection and at most one request in flight.
	Connections int
	Duration    time.Duration
	// MaxRequests bounds the number of requests; 0 means no bound.
	MaxRequests int64
	// Rate is the open-loop request rate per second, spread evenly over
	// the workers on a fixed schedule; 0 means closed loop (each worker
	// sends its next request as soon as the answer is read).
	Rate float64
	// ResultShare is the fraction of requests that are command results
	// instead of Status Idle.
	ResultShare float64
	// Timeout bounds one request; default 10s.
	Timeout time.Duration
	// Seed makes the choice of devices reproducible.
	Seed uint64
}

// ErrorTransport counts requests that got no HTTP answer.
const ErrorTransport = "transport"

// LoadResult is what one load run measured.
type LoadResult struct {
	// Requests is the number of requests sent; OK those answered 200.
	Requests, OK uint64
	// Errors counts the others by status code ("401") or ErrorTransport.
	Errors map[string]uint64
	// Elapsed is the wall time of the run.
	Elapsed time.Duration
	// Latency holds every answered request's latency. Closed loop: from
	// send to the end of the answer. Open loop: from the scheduled send
	// time when the worker was still busy at that time (so that a slow
	// server is not hidden by a generator that waits for it), otherwise
	// from the actual send.
	Latency *Histogram
}

// Rate returns the answered requests per second.
func (r *LoadResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Latency.Count()) / r.Elapsed.Seconds()
}

// ErrorCount returns the number of requests not answered 200.
func (r *LoadResult) ErrorCount() uint64 {
	var n uint64
	for _, c := range r.Errors {
		n += c
	}
	return n
}

// RunLoad runs one load run against t. Requests pick devices uniformly at
// random. Connections are opened before the clock starts.
func RunLoad(ctx context.Context, t Target, s LoadSpec) (*LoadResult, error) {
	if s.Fleet == nil || s.Fleet.Len() == 0 {
		return nil, errors.New("bench: load: empty fleet")
	}
	if s.Connections <= 0 || s.Duration <= 0 {
		return nil, errors.New("bench: load: Connections and Duration must be positive")
	}
	if s.Timeout <= 0 {
		s.Timeout = 10 * time.Second
	}
	workers := make([]*worker, s.Connections)
	for i := range workers {
		w := &worker{target: t, spec: &s, id: i, hist: &Histogram{}, errs: map[string]uint64{},
			rng: rand.New(rand.NewPCG(s.Seed, uint64(i))), buf: make([]byte, 0, 8<<10)}
		if err := w.dial(ctx); err != nil {
			for _, o := range workers[:i] {
				o.close()
			}
			return nil, fmt.Errorf("bench: load: connecting to %s: %w", t.Addr, err)
		}
		workers[i] = w
	}
	var issued atomic.Int64
	start := time.Now()
	end := start.Add(s.Duration)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.close()
			w.run(ctx, start, end, &issued)
		}()
	}
	wg.Wait()
	res := &LoadResult{Elapsed: time.Since(start), Errors: map[string]uint64{}, Latency: &Histogram{}}
	for _, w := range workers {
		res.Requests += w.sent
		res.OK += w.ok
		res.Latency.Merge(w.hist)
		for k, v := range w.errs {
			res.Errors[k] += v
		}
	}
	return res, ctx.Err()
}

// worker owns one connection.
type worker struct {
	target Target
	spec   *LoadSpec
	id     int
	rng    *rand.Rand

	conn net.Conn
	rd   *bufio.Reader
	buf  []byte

	sent, ok uint64
	hist     *Histogram
	errs     map[string]uint64
}

func (w *worker) dial(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", w.target.Addr)
	if err != nil {
		return err
	}
	if w.target.TLS != nil {
		cfg := w.target.TLS.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(w.target.Addr)
		}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return err
		}
		c = tc
	}
	w.conn = c
	if w.rd == nil {
		w.rd = bufio.NewReaderSize(c, 16<<10)
	} else {
		w.rd.Reset(c)
	}
	return nil
}

func (w *worker) close() {
	if w.conn != nil {
		w.conn.Close()
		w.conn = nil
	}
}

func (w *worker) run(ctx context.Context, start, end time.Time, issued *atomic.Int64) {
	s := w.spec
	n := s.Fleet.Len()
	var interval float64 // seconds between this worker's sends (open loop)
	if s.Rate > 0 {
		interval = float64(s.Connections) / s.Rate
	}
	free := start // when the previous request ended
	for k := 0; ctx.Err() == nil; k++ {
		begin := time.Now()
		if interval > 0 {
			// Worker w sends its k-th request at start + (k·C + w)/Rate.
			at := start.Add(time.Duration((float64(k) + float64(w.id)/float64(s.Connections)) * interval * float64(time.Second)))
			if !at.Before(end) {
				return
			}
			if free.Before(at) {
				if d := time.Until(at); d > 0 {
					time.Sleep(d)
				}
				begin = time.Now() // idle worker: time from the actual send
			} else {
				begin = at // busy worker: the wait counts
			}
		} else if !begin.Before(end) {
			return
		}
		if s.MaxRequests > 0 && issued.Add(1) > s.MaxRequests {
			return
		}
		i := w.rng.IntN(n)
		result := s.ResultShare > 0 && w.rng.Float64() < s.ResultShare
		status, err := w.do(ctx, s.Fleet.Request(w.buf, i, result))
		free = time.Now()
		w.sent++
		if err != nil {
			w.errs[ErrorTransport]++
			w.close()
			if ctx.Err() != nil {
				return
			}
			if err := w.dial(ctx); err != nil {
				// The server is gone or refusing: back off, try again.
				select {
				case <-ctx.Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
			continue
		}
		w.hist.Record(free.Sub(begin))
		if status == 200 {
			w.ok++
		} else {
			w.errs[strconv.Itoa(status)]++
		}
	}
}

// do sends one request and reads its answer.
func (w *worker) do(ctx context.Context, req []byte) (int, error) {
	if w.conn == nil {
		if err := w.dial(ctx); err != nil {
			return 0, err
		}
	}
	if err := w.conn.SetDeadline(time.Now().Add(w.spec.Timeout)); err != nil {
		return 0, err
	}
	if _, err := w.conn.Write(req); err != nil {
		return 0, err
	}
	status, keep, err := readResponse(w.rd)
	if err != nil {
		return 0, err
	}
	if !keep {
		w.close()
	}
	return status, nil
}

// errMalformed reports an answer that is not HTTP/1.1 as this reader
// understands it.
var errMalformed = errors.New("bench: malformed HTTP answer")

// readResponse reads one HTTP/1.x answer from r, discarding the body, and
// reports its status and whether the connection may be reused.
func readResponse(r *bufio.Reader) (status int, keepAlive bool, err error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, errMalformed
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil || status < 100 {
		return 0, false, errMalformed
	}
	keepAlive = line[7] == '1'
	length, chunked := int64(-1), false
	for {
		line, err = r.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, false, errMalformed
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return 0, false, errMalformed
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			if bytes.EqualFold(value, []byte("close")) {
				keepAlive = false
			}
		}
	}
	switch {
	case status < 200 || status == 204 || status == 304:
		if status < 200 {
			return readResponse(r) // an interim answer: the real one follows
		}
	case chunked:
		err = discardChunked(r)
	case length >= 0:
		_, err = r.Discard(int(length))
	default: // the body ends with the connection
		_, err = io.Copy(io.Discard, r)
		keepAlive = false
	}
	if err != nil {
		return 0, false, err
	}
	return status, keepAlive, nil
}

// discardChunked reads and drops a chunked body and its trailers.
func discardChunked(r *bufio.Reader) error {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || size < 0 {
			return errMalformed
		}
		if size == 0 {
			for { // trailers, up to the blank line
				line, err := r.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return nil
				}
			}
		}
		if _, err := r.Discard(int(size)); err != nil {
			return err
		}
		if crlf, err := r.ReadSlice('\n'); err != nil || len(bytes.TrimRight(crlf, "\r\n")) != 0 {
			return errMalformed
		}
	}
}

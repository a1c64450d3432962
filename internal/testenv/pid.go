package testenv

// PID returns the process id of the running Caddy, or 0 when it is not running. Benchmarks
// read its CPU time and memory from /proc/<pid>.
func (c *Caddy) PID() int { return c.proc.pid() }

// PID returns the process id of the running NanoMDM, or 0 when it is not running.
func (n *NanoMDM) PID() int { return n.proc.pid() }

// PID returns the process id of the running OpenID provider, or 0 when it is not running.
func (o *OIDC) PID() int { return o.proc.pid() }

// pid returns the id of the current run's process, or 0 when it is not running.
func (p *process) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	select {
	case <-p.done:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procSample is a process's CPU time and memory at one moment.
type procSample struct {
	at      time.Time
	cpu     time.Duration // user + system
	rss     int64         // bytes
	rssPeak int64         // bytes (VmHWM)
	ok      bool
}

// procDelta is what a process used between two samples.
type procDelta struct {
	Wall    time.Duration
	CPU     time.Duration
	RSS     int64
	RSSPeak int64
	OK      bool
}

func (s procSample) since(before procSample) procDelta {
	return procDelta{Wall: s.at.Sub(before.at), CPU: s.cpu - before.cpu, RSS: s.rss, RSSPeak: s.rssPeak, OK: s.ok && before.ok}
}

// prober samples the measured server process.
type prober func() procSample

// selfProbe measures this process (in-process runs: server and load
// generator together, since they share it).
func selfProbe() procSample {
	s := procSample{at: time.Now()}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return s
	}
	s.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	s.rss, s.rssPeak, _ = memOf("self")
	s.ok = true
	return s
}

// pidProbe measures another process on this machine (a local --target).
func pidProbe(pid int) prober {
	return func() procSample {
		s := procSample{at: time.Now()}
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return s
		}
		// The command name may hold spaces: fields count from after its ')'.
		str := string(raw)
		i := strings.LastIndexByte(str, ')')
		if i < 0 {
			return s
		}
		f := strings.Fields(str[i+1:])
		if len(f) < 13 {
			return s
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		// Linux reports these in USER_HZ, 100 per second on every platform Go supports.
		s.cpu = time.Duration(utime+stime) * (time.Second / 100)
		s.rss, s.rssPeak, err = memOf(strconv.Itoa(pid))
		s.ok = err == nil
		return s
	}
}

func noProbe() procSample { return procSample{at: time.Now()} }

// memOf reads VmRSS and VmHWM of /proc/<pid>/status.
func memOf(pid string) (rss, peak int64, err error) {
	raw, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			peak = n << 10
		}
	}
	return rss, peak, nil
}

package bench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Machine describes the machine a report was made on.
type Machine struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	MemoryGiB string `json:"memory_gib"`
	OS        string `json:"os"`
	Go        string `json:"go"`
}

// String renders the machine on one line.
func (m Machine) String() string {
	return fmt.Sprintf("%s, %d cores, %s GiB memory, %s, %s", m.CPU, m.Cores, m.MemoryGiB, m.OS, m.Go)
}

// DescribeMachine returns this machine's description (CPU model and memory are read from
// /proc on Linux, "unknown" elsewhere).
func DescribeMachine() Machine {
	m := Machine{CPU: "unknown", MemoryGiB: "unknown", Cores: runtime.NumCPU(),
		OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version()}
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		m.CPU = v
	}
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		if kb, err := strconv.ParseFloat(strings.TrimSuffix(v, " kB"), 64); err == nil {
			m.MemoryGiB = fmt.Sprintf("%.1f", kb/(1<<20))
		}
	}
	return m
}

// procField returns the value of the first "key : value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

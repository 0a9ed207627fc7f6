package hub

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/core"
)

// promGauges are the fields of Metrics that are gauges; every other field is a counter.
var promGauges = map[string]bool{"Connections": true, "PartitionWorkers": true, "MaxBatch": true}

// TestWritePrometheus: every field of Metrics is written, under its JSON name prefixed
// sluice_hub_, a counter's with _total after it, with its own value, after its HELP and TYPE
// lines; and sluice_build_info names the version. The fields are found by reflection, so
// a field added to Metrics but not to promMetrics fails here.
func TestWritePrometheus(t *testing.T) {
	var m Metrics
	v := reflect.ValueOf(&m).Elem()
	type want struct {
		field, kind string
		value       uint64
	}
	wants := map[string]want{}
	for i := range v.NumField() {
		f := v.Type().Field(i)
		value := uint64(1000*(i+1) + i) // distinct in every field
		if i == 0 {
			value = 1<<64 - 1 // the largest, written exactly
		}
		v.Field(i).SetUint(value)
		jsonName, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		name, kind := "sluice_hub_"+jsonName, promGauge
		if !promGauges[f.Name] {
			name, kind = name+"_total", promCounter
		}
		wants[name] = want{f.Name, kind, value}
	}

	var buf bytes.Buffer
	if err := m.WritePrometheus(&buf); err != nil {
		t.Fatal(err)
	}
	families, err := parsePrometheus(buf.String())
	if err != nil {
		t.Fatalf("WritePrometheus wrote what is not the text format 0.0.4: %v\n%s", err, buf.String())
	}
	for name, w := range wants {
		f, ok := families[name]
		switch {
		case !ok:
			t.Errorf("Metrics.%s is not written as %s (add it to promMetrics)", w.field, name)
		case f.kind != w.kind:
			t.Errorf("%s (Metrics.%s) has TYPE %s, want %s", name, w.field, f.kind, w.kind)
		case len(f.samples) != 1 || f.samples[0].labels != nil || f.samples[0].value != strconv.FormatUint(w.value, 10):
			t.Errorf("%s (Metrics.%s) = %+v, want one sample without labels, %d", name, w.field, f.samples, w.value)
		}
	}
	for name := range families {
		if _, ok := wants[name]; !ok && name != "sluice_build_info" {
			t.Errorf("%s is written, but Metrics has no field it stands for", name)
		}
	}
	info := families["sluice_build_info"]
	if info == nil || info.kind != promGauge || len(info.samples) != 1 ||
		!reflect.DeepEqual(info.samples[0].labels, map[string]string{"version": core.Version()}) || info.samples[0].value != "1" {
		t.Errorf("sluice_build_info = %+v, want a gauge, 1 with version=%q", info, core.Version())
	}
}

// WritePrometheus returns the error of its writer (an HTTP handler's client gone).
func TestWritePrometheusWriteError(t *testing.T) {
	if err := (Metrics{}).WritePrometheus(failingWriter{}); !errors.Is(err, errWrite) {
		t.Errorf("WritePrometheus to a failing writer: %v, want its error", err)
	}
}

var errWrite = errors.New("write failed")

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errWrite }

// A version label can hold quotes, backslashes (a Windows path after "replaced by") and
// newlines: they are escaped, and read back as they were.
func TestPromLabelValue(t *testing.T) {
	const s = `(devel) replaced by C:\src\"sluice"` + "\nnext"
	families, err := parsePrometheus("# HELP x x\n# TYPE x gauge\nx{version=\"" + promLabelValue(s) + "\"} 1\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := families["x"].samples[0].labels["version"]; got != s {
		t.Errorf("label read back as %q, want %q", got, s)
	}
}

// promFamily is a metric family read by parsePrometheus.
type promFamily struct {
	help, kind string
	samples    []promSample
}

type promSample struct {
	labels map[string]string // nil without labels
	value  string
}

var (
	promName       = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	promSampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
	promLabel      = regexp.MustCompile(`^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(?:,|$)`)
	promUnescape   = strings.NewReplacer(`\\`, `\`, `\"`, `"`, `\n`, "\n")
)

// parsePrometheus reads text in the Prometheus text format 0.0.4, as far as
// WritePrometheus uses it, strictly: each metric has one HELP and one TYPE line (counter or
// gauge) before its samples, which come together; every other line is a sample,
// "name value" or "name{labels} value", whose value is a number; the text ends with a
// newline. Only the untyped and summary/histogram parts are left out.
func parsePrometheus(text string) (map[string]*promFamily, error) {
	if !strings.HasSuffix(text, "\n") {
		return nil, errors.New("does not end with a newline")
	}
	families := map[string]*promFamily{}
	var current string // the family whose samples may follow
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		bad := func(why string) error { return fmt.Errorf("line %d %q: %s", i+1, line, why) }
		if rest, ok := strings.CutPrefix(line, "# "); ok {
			keyword, rest, _ := strings.Cut(rest, " ")
			name, arg, _ := strings.Cut(rest, " ")
			if !promName.MatchString(name) || arg == "" {
				return nil, bad("want # HELP or # TYPE, a metric name and text")
			}
			f := families[name]
			if f == nil {
				if current != "" && len(families[current].samples) == 0 {
					return nil, bad("the family before has no samples")
				}
				f = &promFamily{}
				families[name], current = f, name
			} else if name != current || len(f.samples) > 0 {
				return nil, bad("HELP and TYPE come together, before the family's samples")
			}
			switch {
			case keyword == "HELP" && f.help == "" && !strings.Contains(arg, `\`):
				f.help = arg
			case keyword == "TYPE" && f.kind == "" && (arg == promCounter || arg == promGauge):
				f.kind = arg
			default:
				return nil, bad("want one HELP (without escapes) and one TYPE (counter or gauge)")
			}
			continue
		}
		m := promSampleLine.FindStringSubmatch(line)
		if m == nil {
			return nil, bad("want name value or name{labels} value")
		}
		f := families[m[1]]
		if m[1] != current || f.help == "" || f.kind == "" {
			return nil, bad("a sample needs its family's HELP and TYPE lines just before it")
		}
		if _, err := strconv.ParseFloat(m[3], 64); err != nil {
			return nil, bad("the value is not a number")
		}
		s := promSample{value: m[3]}
		if strings.Contains(line, "{") {
			s.labels = map[string]string{}
			for rest := m[2]; rest != ""; {
				l := promLabel.FindStringSubmatch(rest)
				if l == nil {
					return nil, bad(`want labels name="value",... (escapes \\, \" and \n only)`)
				}
				s.labels[l[1]] = promUnescape.Replace(l[2])
				rest = rest[len(l[0]):]
			}
		}
		f.samples = append(f.samples, s)
	}
	for name, f := range families {
		if len(f.samples) == 0 {
			return nil, fmt.Errorf("%s has HELP and TYPE lines but no samples", name)
		}
	}
	return families, nil
}

package bench

import (
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// Progress receives the progress of [Run]: Start with the number of measurements, Describe
// before each one starts, Add when measurements end, and Finish at the end. Calls come from
// one goroutine.
type Progress interface {
	Start(total int)
	Describe(desc string)
	Add(n int, desc string)
	Finish()
}

type nopProgress struct{}

func (nopProgress) Start(int)       {}
func (nopProgress) Describe(string) {}
func (nopProgress) Add(int, string) {}
func (nopProgress) Finish()         {}

// bar is a Progress drawn with github.com/schollz/progressbar.
type bar struct {
	w   io.Writer
	bar *progressbar.ProgressBar
}

// NewProgressBar returns a Progress that draws a progress bar on w (a terminal).
func NewProgressBar(w io.Writer) Progress { return &bar{w: w} }

// IsTerminal reports whether f is a terminal, where a progress bar can be drawn.
func IsTerminal(f *os.File) bool {
	return f != nil && term.IsTerminal(int(f.Fd()))
}

func (b *bar) Start(total int) {
	b.bar = progressbar.NewOptions(total,
		progressbar.OptionSetWriter(b.w),
		progressbar.OptionSetDescription("bench"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
	)
}

func (b *bar) Describe(desc string) {
	if b.bar != nil {
		b.bar.Describe(desc)
	}
}

func (b *bar) Add(n int, desc string) {
	if b.bar != nil {
		b.bar.Describe(desc)
		_ = b.bar.Add(n)
	}
}

func (b *bar) Finish() {
	if b.bar != nil {
		_ = b.bar.Finish()
	}
}

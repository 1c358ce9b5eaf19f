package peername

import (
	"context"
	"log/slog"
	"strings"

	clog "github.com/coredns/coredns/plugin/pkg/log"
)

// clogHandler is a slog.Handler that writes through CoreDNS's logger, so
// the overlay driver's slog output reads like the rest of the plugin's
// log. Debug records are written only when the debug plugin is on.
type clogHandler struct {
	prefix string // rendered attributes of WithAttrs, with group prefixes
	group  string
}

func (h clogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || clog.D.Value()
}

func (h clogHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString("overlay: ")
	b.WriteString(r.Message)
	b.WriteString(h.prefix)
	r.Attrs(func(a slog.Attr) bool {
		writeAttr(&b, h.group, a)
		return true
	})
	msg := b.String()
	switch {
	case r.Level >= slog.LevelError:
		log.Error(msg)
	case r.Level >= slog.LevelWarn:
		log.Warning(msg)
	case r.Level >= slog.LevelInfo:
		log.Info(msg)
	default:
		log.Debug(msg)
	}
	return nil
}

func (h clogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.prefix)
	for _, a := range attrs {
		writeAttr(&b, h.group, a)
	}
	return clogHandler{prefix: b.String(), group: h.group}
}

func (h clogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return clogHandler{prefix: h.prefix, group: h.group + name + "."}
}

// writeAttr appends " key=value", flattening groups.
func writeAttr(b *strings.Builder, group string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		g := group
		if a.Key != "" {
			g += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			writeAttr(b, g, ga)
		}
		return
	}
	b.WriteByte(' ')
	b.WriteString(group)
	b.WriteString(a.Key)
	b.WriteByte('=')
	b.WriteString(a.Value.String())
}

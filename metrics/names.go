package metrics

import (
	"regexp"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// Names lists the takedown_ metric families takedownd exports (a
// histogram's _bucket, _sum and _count series are under its family name).
// Dashboards and alert rules are checked against it.
func Names() []string {
	rec := &recorder{}
	New(rec)
	NewClusterCollector(nil, 0).Describe(rec.descs())
	rec.close()
	slices.Sort(rec.names)
	return slices.Compact(rec.names)
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// recorder is a Registerer that only records the names it is shown.
type recorder struct {
	names []string
	ch    chan *prometheus.Desc
	done  chan struct{}
}

func (r *recorder) descs() chan<- *prometheus.Desc {
	if r.ch == nil {
		r.ch, r.done = make(chan *prometheus.Desc), make(chan struct{})
		go func() {
			defer close(r.done)
			for d := range r.ch {
				if m := fqName.FindStringSubmatch(d.String()); m != nil {
					r.names = append(r.names, m[1])
				}
			}
		}()
	}
	return r.ch
}

func (r *recorder) close() {
	if r.ch != nil {
		close(r.ch)
		<-r.done
	}
}

func (r *recorder) Register(c prometheus.Collector) error {
	c.Describe(r.descs())
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *recorder) Unregister(prometheus.Collector) bool { return false }

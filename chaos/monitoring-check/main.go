// Command monitoring-check reads Kubernetes objects (YAML documents) on
// standard input and decodes each ServiceMonitor, PodMonitor and
// PrometheusRule strictly into the Prometheus Operator's own Go types: a
// field the operator does not know, or a value of the wrong type, fails.
// It prints the kinds it checked. meshlb's chart tests run it on the chart's
// rendering (chaos/tests/chart.rs; built by scripts/monitoring-check).
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

func main() {
	checked, err := check(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "monitoring-check:", err)
		os.Exit(1)
	}
	for _, line := range checked {
		fmt.Println(line)
	}
}

// check decodes every monitoring object of the stream; what it checked, as
// "Kind/name" lines.
func check(input io.Reader) ([]string, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(input))
	var checked []string
	for {
		document, err := reader.Read()
		if err == io.EOF {
			return checked, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(document)) == 0 {
			continue
		}
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(document, &meta); err != nil {
			return nil, err
		}
		var object any
		switch meta.Kind {
		case monitoringv1.ServiceMonitorsKind:
			object = &monitoringv1.ServiceMonitor{}
		case monitoringv1.PodMonitorsKind:
			object = &monitoringv1.PodMonitor{}
		case monitoringv1.PrometheusRuleKind:
			object = &monitoringv1.PrometheusRule{}
		default:
			continue
		}
		if err := yaml.UnmarshalStrict(document, object); err != nil {
			return nil, fmt.Errorf("%s %s: %w", meta.Kind, meta.Metadata.Name, err)
		}
		checked = append(checked, meta.Kind+"/"+meta.Metadata.Name)
	}
}

module github.com/takedown-eu/takedown

go 1.26.8

require (
	github.com/google/uuid v1.6.0
	go.yaml.in/yaml/v3 v3.0.6
)

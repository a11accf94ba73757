// nfd-master of Node Feature Discovery, built from its released module for tests/nfd.
// The module's own go.mod replaces its API submodule with a local path (./api/nfd), which Go
// ignores in a dependency, and a replace line keeps `go install ...@version` from working:
// hence this wrapper, which requires the submodule at the same published version.
module deviceplugin-operator.test/nfd-master

go 1.23.0

require (
	sigs.k8s.io/node-feature-discovery v0.17.3
	sigs.k8s.io/node-feature-discovery/api/nfd v0.17.3
)

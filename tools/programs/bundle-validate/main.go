// Command bundle-validate checks an OLM bundle directory the way `operator-sdk bundle validate`
// does, with the validators operator-sdk itself runs (github.com/operator-framework/api's
// pkg/validation): operator-sdk's own module is not served by the Go module proxy, the
// validation library it calls is.
//
//	bundle-validate [--select-optional suite=operatorframework] [--optional-values k8s-version=1.33] DIR
//
// Steps, in operator-sdk's order:
//
//  1. the bundle format (operator-registry's ValidateBundleFormat, restated here because that
//     module drags in container runtimes): manifests/ and metadata/ exist, metadata/ holds an
//     annotations file whose mediatype, manifests, metadata, package and channels labels are
//     set and consistent, and the default channel is one of the channels;
//  2. the bundle loaded with manifests.GetBundleFromDir(DIR/manifests), as operator-sdk loads it;
//  3. the content: every object besides the CSV and CRDs is of a kind registry+v1 bundles may
//     carry and has valid object metadata; then the default validators (bundle, CSV, CRDs);
//  4. the optional validators picked by a label selector on operator-sdk's names and suites
//     (suite=operatorframework: operatorhubv2, capabilities, categories,
//     alpha-deprecated-apis, good-practices; by name: operatorhub, community, multiarch),
//     given the --optional-values.
//
// Every error and warning is printed, one a line ("ERROR"/"WARNING", the manifest, the
// message); the exit status is 1 when there is an error, 2 on bad usage, 0 otherwise.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	apimanifests "github.com/operator-framework/api/pkg/manifests"
	apivalidation "github.com/operator-framework/api/pkg/validation"
	apierrors "github.com/operator-framework/api/pkg/validation/errors"
	interfaces "github.com/operator-framework/api/pkg/validation/interfaces"
	k8svalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

const (
	mediatypeLabel      = "operators.operatorframework.io.bundle.mediatype.v1"
	manifestsLabel      = "operators.operatorframework.io.bundle.manifests.v1"
	metadataLabel       = "operators.operatorframework.io.bundle.metadata.v1"
	packageLabel        = "operators.operatorframework.io.bundle.package.v1"
	channelsLabel       = "operators.operatorframework.io.bundle.channels.v1"
	defaultChannelLabel = "operators.operatorframework.io.bundle.channel.default.v1"
	registryV1          = "registry+v1"
	manifestsDir        = "manifests/"
	metadataDir         = "metadata/"
)

// supportedKinds are the kinds a registry+v1 bundle may carry besides its CSV and CRDs
// (operator-registry's pkg/lib/bundle supported resources).
var supportedKinds = map[string]bool{
	"ClusterServiceVersion": true, "CustomResourceDefinition": true, "Secret": true,
	"ClusterRole": true, "ClusterRoleBinding": true, "ConfigMap": true, "ServiceAccount": true,
	"Service": true, "Role": true, "RoleBinding": true, "PrometheusRule": true,
	"ServiceMonitor": true, "PodDisruptionBudget": true, "PriorityClass": true,
	"VerticalPodAutoscaler": true, "ConsoleYAMLSample": true, "ConsoleQuickStart": true,
	"ConsoleCLIDownload": true, "ConsoleLink": true, "ConsolePlugin": true,
	"NetworkPolicy": true,
}

type optional struct {
	validator interfaces.Validator
	labels    labels.Set
}

// optionalValidators are operator-sdk's (internal/cmd/operator-sdk/bundle/validate/optional.go),
// with the same names and suites.
var optionalValidators = []optional{
	{apivalidation.OperatorHubV2Validator, labels.Set{"name": "operatorhubv2", "suite": "operatorframework"}},
	{apivalidation.StandardCapabilitiesValidator, labels.Set{"name": "capabilities", "suite": "operatorframework"}},
	{apivalidation.StandardCategoriesValidator, labels.Set{"name": "categories", "suite": "operatorframework"}},
	{apivalidation.OperatorHubValidator, labels.Set{"name": "operatorhub"}}, //nolint:staticcheck
	{apivalidation.CommunityOperatorValidator, labels.Set{"name": "community"}},
	{apivalidation.AlphaDeprecatedAPIsValidator, labels.Set{"name": "alpha-deprecated-apis", "suite": "operatorframework"}},
	{apivalidation.GoodPracticesValidator, labels.Set{"name": "good-practices", "suite": "operatorframework"}},
	{apivalidation.MultipleArchitecturesValidator, labels.Set{"name": "multiarch"}},
}

type keyValues map[string]string

func (k keyValues) String() string { return fmt.Sprint(map[string]string(k)) }

func (k keyValues) Set(value string) error {
	for _, pair := range strings.Split(value, ",") {
		key, val, found := strings.Cut(pair, "=")
		if !found || key == "" {
			return fmt.Errorf("%q is not key=value (e.g. k8s-version=1.33)", pair)
		}
		k[key] = val
	}
	return nil
}

func main() {
	selectorRaw := flag.String("select-optional", "",
		"label selector of optional validators, e.g. suite=operatorframework or name=good-practices")
	values := keyValues{}
	flag.Var(values, "optional-values", "key=value pairs for the optional validators, e.g. k8s-version=1.33")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [--select-optional SELECTOR] [--optional-values k=v,...] BUNDLE_DIR\n",
			filepath.Base(os.Args[0]))
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	selector, err := labels.Parse(*selectorRaw)
	if err != nil {
		fmt.Fprintf(os.Stderr, "--select-optional: %v\n", err)
		os.Exit(2)
	}
	if *selectorRaw != "" && !matchesAny(selector) {
		fmt.Fprintf(os.Stderr, "--select-optional: %q matches no validator (names: %s)\n",
			*selectorRaw, strings.Join(validatorNames(), ", "))
		os.Exit(2)
	}

	results := validate(flag.Arg(0), selector, *selectorRaw != "", values)
	errorCount, warningCount := report(results)
	fmt.Printf("%d error(s), %d warning(s)\n", errorCount, warningCount)
	if errorCount > 0 {
		os.Exit(1)
	}
}

func matchesAny(selector labels.Selector) bool {
	for _, v := range optionalValidators {
		if selector.Matches(v.labels) {
			return true
		}
	}
	return false
}

func validatorNames() []string {
	names := []string{}
	for _, v := range optionalValidators {
		names = append(names, v.labels["name"])
	}
	return names
}

func validate(dir string, selector labels.Selector, runOptional bool, values keyValues) []apierrors.ManifestResult {
	format := apierrors.ManifestResult{Name: "bundle format"}
	for _, err := range validateFormat(dir) {
		format.Add(apierrors.ErrInvalidBundle(err.Error(), dir))
	}
	if format.HasError() {
		return []apierrors.ManifestResult{format}
	}

	bundle, err := apimanifests.GetBundleFromDir(filepath.Join(dir, manifestsDir))
	if err != nil {
		format.Add(apierrors.ErrInvalidBundle(fmt.Sprintf("loading the bundle: %v", err), dir))
		return []apierrors.ManifestResult{format}
	}

	content := apierrors.ManifestResult{Name: bundle.Name}
	for _, object := range bundle.Objects {
		kind := object.GetObjectKind().GroupVersionKind().Kind
		if kind == "ClusterServiceVersion" || kind == "CustomResourceDefinition" {
			continue
		}
		if !supportedKinds[kind] {
			content.Add(apierrors.ErrInvalidBundle(
				fmt.Sprintf("%s %q: kind not supported in a %s bundle", kind, object.GetName(), registryV1), kind))
			continue
		}
		noPrefix := func(string, bool) []string { return nil }
		if errs := k8svalidation.ValidateObjectMetaAccessor(object, false, noPrefix, field.NewPath("metadata")); len(errs) > 0 {
			content.Add(apierrors.ErrFailedValidation(errs.ToAggregate().Error(), object.GetName()))
		}
	}

	results := []apierrors.ManifestResult{format}
	results = append(results, apivalidation.BundleValidator.Validate(bundle)...)
	if bundle.CSV != nil {
		results = append(results, apivalidation.ClusterServiceVersionValidator.Validate(bundle.CSV)...)
	} else {
		content.Add(apierrors.ErrInvalidBundle("no ClusterServiceVersion in bundle", bundle.Name))
	}
	crds := []interface{}{}
	for _, crd := range bundle.V1beta1CRDs {
		crds = append(crds, crd)
	}
	for _, crd := range bundle.V1CRDs {
		crds = append(crds, crd)
	}
	if len(crds) > 0 {
		results = append(results, apivalidation.CustomResourceDefinitionValidator.Validate(crds...)...)
	}
	results = append(results, content)

	if runOptional {
		objects := bundle.ObjectsToValidate()
		for _, object := range bundle.Objects {
			objects = append(objects, object)
		}
		objects = append(objects, map[string]string(values))
		for _, v := range optionalValidators {
			if selector.Matches(v.labels) {
				results = append(results, v.validator.Validate(objects...)...)
			}
		}
	}
	return results
}

// validateFormat restates operator-registry's ValidateBundleFormat for a registry+v1 bundle.
func validateFormat(dir string) []error {
	var errs []error
	for _, sub := range []string{manifestsDir, metadataDir} {
		info, err := os.Stat(filepath.Join(dir, sub))
		if err != nil || !info.IsDir() {
			errs = append(errs, fmt.Errorf("unable to locate the %s directory in %s", strings.TrimSuffix(sub, "/"), dir))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	if !hasCSV(filepath.Join(dir, manifestsDir)) {
		errs = append(errs, fmt.Errorf("%s holds no ClusterServiceVersion, so it is no %s bundle", manifestsDir, registryV1))
	}

	annotations, file := findAnnotations(filepath.Join(dir, metadataDir))
	if annotations == nil {
		return append(errs, fmt.Errorf("could not find an annotations file in %s", metadataDir))
	}
	expected := map[string]string{
		mediatypeLabel: registryV1,
		manifestsLabel: manifestsDir,
		metadataLabel:  metadataDir,
	}
	for _, label := range []string{mediatypeLabel, manifestsLabel, metadataLabel, packageLabel, channelsLabel} {
		value, found := annotations[label]
		switch {
		case !found:
			errs = append(errs, fmt.Errorf("%s: missing annotation %q", file, label))
		case expected[label] != "" && value != expected[label]:
			errs = append(errs, fmt.Errorf("%s: expecting annotation %q to have value %q instead of %q",
				file, label, expected[label], value))
		case value == "":
			errs = append(errs, fmt.Errorf("%s: expecting annotation %q to have a non-empty value", file, label))
		}
	}
	if value, found := annotations[defaultChannelLabel]; found {
		channels := strings.Split(annotations[channelsLabel], ",")
		sort.Strings(channels)
		index := sort.SearchStrings(channels, value)
		if value == "" {
			errs = append(errs, fmt.Errorf("%s: expecting annotation %q to have a non-empty value", file, defaultChannelLabel))
		} else if index == len(channels) || channels[index] != value {
			errs = append(errs, fmt.Errorf("%s: the default channel %q is not one of the channels %q",
				file, value, annotations[channelsLabel]))
		}
	}
	return errs
}

func hasCSV(manifests string) bool {
	entries, _ := os.ReadDir(manifests)
	for _, entry := range entries {
		if entry.IsDir() {
			continue
		}
		content, err := os.ReadFile(filepath.Join(manifests, entry.Name()))
		if err != nil {
			continue
		}
		var object struct {
			Kind string `json:"kind"`
		}
		if yaml.Unmarshal(content, &object) == nil && object.Kind == "ClusterServiceVersion" {
			return true
		}
	}
	return false
}

func findAnnotations(metadata string) (map[string]string, string) {
	entries, _ := os.ReadDir(metadata)
	for _, entry := range entries {
		if entry.IsDir() {
			continue
		}
		path := filepath.Join(metadata, entry.Name())
		content, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var file struct {
			Annotations map[string]string `json:"annotations"`
		}
		if yaml.Unmarshal(content, &file) == nil && file.Annotations != nil {
			return file.Annotations, filepath.Join(filepath.Base(metadata), entry.Name())
		}
	}
	return nil, ""
}

func report(results []apierrors.ManifestResult) (int, int) {
	errorCount, warningCount := 0, 0
	for _, result := range results {
		for _, e := range result.Errors {
			errorCount++
			fmt.Printf("ERROR %s: %s\n", result.Name, e.Error())
		}
		for _, w := range result.Warnings {
			warningCount++
			fmt.Printf("WARNING %s: %s\n", result.Name, w.Error())
		}
	}
	return errorCount, warningCount
}

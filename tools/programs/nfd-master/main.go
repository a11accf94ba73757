// Command nfd-master runs Node Feature Discovery's master (sigs.k8s.io/node-feature-discovery,
// pkg/nfd-master) outside a pod: it reads NodeFeature and NodeFeatureRule objects and writes
// the labels and extended resources the rules produce onto the nodes. Only the flags the tests
// use are offered; everything else keeps nfd-master's defaults.
package main

import (
	"flag"
	"fmt"
	"os"

	"k8s.io/klog/v2"

	"sigs.k8s.io/node-feature-discovery/pkg/features"
	master "sigs.k8s.io/node-feature-discovery/pkg/nfd-master"
	klogutils "sigs.k8s.io/node-feature-discovery/pkg/utils/klog"
	"sigs.k8s.io/node-feature-discovery/pkg/version"
)

func main() {
	flags := flag.NewFlagSet("nfd-master", flag.ExitOnError)
	args := &master.Args{}
	flags.StringVar(&args.Kubeconfig, "kubeconfig", "", "Kubeconfig of the cluster.")
	flags.StringVar(&args.ConfigFile, "config", "", "nfd-master.conf to read (none by default).")
	flags.StringVar(&args.Options, "options", "", "Configuration as YAML or JSON, over -config.")
	flags.IntVar(&args.MetricsPort, "metrics", 0, "Port of the Prometheus metrics (0: none).")
	flags.IntVar(&args.GrpcHealthPort, "grpc-health", 0, "Port of the gRPC health server (0: none).")
	printVersion := flags.Bool("version", false, "Print the version and exit.")
	args.Klog = klogutils.InitKlogFlags(flags)
	if err := features.NFDMutableFeatureGate.Add(features.DefaultNFDFeatureGates); err != nil {
		klog.ErrorS(err, "failed to add the default feature gates")
		os.Exit(1)
	}
	features.NFDMutableFeatureGate.AddFlag(flags)
	_ = flags.Parse(os.Args[1:])
	if flags.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "nfd-master: unexpected argument %q\n", flags.Arg(0))
		os.Exit(2)
	}
	if *printVersion {
		fmt.Println("nfd-master", version.Get())
		return
	}
	instance, err := master.NewNfdMaster(master.WithArgs(args))
	if err != nil {
		klog.ErrorS(err, "failed to initialize nfd-master")
		os.Exit(1)
	}
	if err := instance.Run(); err != nil {
		klog.ErrorS(err, "nfd-master stopped")
		os.Exit(1)
	}
}

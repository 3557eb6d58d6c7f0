module github.com/tokenkeeper/tokenkeeper/bench

go 1.26.0

replace github.com/tokenkeeper/tokenkeeper => ../

require (
	cloud.google.com/go/auth v0.24.4
	github.com/aws/aws-sdk-go-v2 v1.48.0
	github.com/aws/smithy-go v1.28.9
	github.com/tokenkeeper/tokenkeeper v0.0.0-00010101000000-000000000000
	golang.org/x/oauth2 v0.38.0
)

require (
	cloud.google.com/go/compute/metadata v0.10.0 // indirect
	github.com/googleapis/gax-go/v2 v2.27.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)

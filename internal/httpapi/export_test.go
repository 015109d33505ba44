package httpapi

// NewReadinessWith is newReadiness, for the tests of package httpapi_test.
var NewReadinessWith = newReadiness

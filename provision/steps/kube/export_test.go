package kube

// RedactLog exposes redactLog to the external tests, which run it.
var RedactLog = redactLog

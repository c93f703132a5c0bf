#!/bin/sh
echo "app serving on :8080 (not really)"

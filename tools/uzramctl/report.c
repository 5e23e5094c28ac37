/* SPDX-License-Identifier: MIT */
/*
 * uzramctl's messages: each error is one line on stderr, prefixed with the
 * program's name.  A usage error also points at --help and exits with
 * EXIT_USAGE (2), before any daemon has been asked anything.
 */
#include "uzramctl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void die_usage(const char *fmt, ...)
{
    va_list ap;

    fputs("uzramctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (try 'uzramctl --help')\n", stderr);
    exit(EXIT_USAGE);
}

void warn(const char *fmt, ...)
{
    va_list ap;

    fputs("uzramctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

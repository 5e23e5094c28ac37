/* SPDX-License-Identifier: MIT */
/*
 * The configuration file (uzram.conf(5)): "key = value" lines, whole-line
 * '#' comments and blank lines.
 *
 * One set of checks.  Every key is the name of a long option of uzramd,
 * and a line is turned into that option ("size = 1G" becomes "--size=1G")
 * for options.c to parse ahead of the command line, which therefore wins.
 * So a value is checked in exactly one place whether it came from the file
 * or from the command line.  Which options are keys, and of what kind, is
 * said by each option's entry in option_table (options-table.c), the one
 * list of uzramd's options.  What this file checks is only what belongs to
 * the file: the syntax, that the key is one of those below, booleans, and
 * that paths are absolute (a relative path in a file would depend on the
 * directory the daemon happened to be started from).
 *
 * Comments are whole lines because a value runs to the end of its line: a
 * path may hold a '#'.  Every error names FILE:LINE.
 */
#include "uzramd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backing.h"
#include "cleanup.h"

/* Files are written by hand: a few dozen lines.  Anything past this is not one. */
#define CONFIG_MAX_ARGS 256

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* 1 true, 0 false, -1 neither. */
static int parse_bool(const char *s)
{
    static const char *const yes[] = { "yes", "true", "on", "1" };
    static const char *const no[] = { "no", "false", "off", "0" };

    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return -1;
}

static int add_arg(struct config_args *a, char *arg, unsigned line)
{
    if (a->n == CONFIG_MAX_ARGS) {
        free(arg);
        return -E2BIG;
    }
    if (!a->argv) {
        a->argv = calloc(CONFIG_MAX_ARGS, sizeof(*a->argv));
        a->lines = calloc(CONFIG_MAX_ARGS, sizeof(*a->lines));
        if (!a->argv || !a->lines) {
            free(arg);
            return -ENOMEM;
        }
    }
    a->argv[a->n] = arg;
    a->lines[a->n] = line;
    a->n++;
    return 0;
}

/* One line, without its newline.  0, or -EINVAL after logging why. */
static int parse_line(const char *path, unsigned line, char *text, struct config_args *a)
{
    char *s = trim(text), *eq, *arg;
    int r;

    if (*s == '\0' || *s == '#')
        return 0;
    eq = strchr(s, '=');
    if (!eq) {
        log_err("%s:%u: want 'key = value', got '%s'", path, line, s);
        return -EINVAL;
    }
    *eq = '\0';
    const char *key = trim(s), *value = trim(eq + 1);

    const struct option_def *def = option_key_find(key);
    if (!def) {
        log_err("%s:%u: unknown key '%s' (see uzram.conf(5))", path, line, key);
        return -EINVAL;
    }
    if (*value == '\0') {
        log_err("%s:%u: %s: missing value", path, line, key);
        return -EINVAL;
    }

    switch (def->key) {
    case OPTION_KEY_BOOL:
        r = parse_bool(value);
        if (r < 0) {
            log_err("%s:%u: %s: bad value '%s' (want yes or no)", path, line, key, value);
            return -EINVAL;
        }
        if (r == 0)
            return 0;
        r = asprintf(&arg, "--%s", key);
        break;
    case OPTION_KEY_SPEC:
        if (backing_spec_is_uri(value)) {
            r = asprintf(&arg, "--%s=%s", key, value);
            break;
        }
        /* fall through */
    case OPTION_KEY_PATH:
        if (value[0] != '/') {
            log_err("%s:%u: %s: bad value '%s' (want an absolute path%s)", path, line, key,
                    value, def->key == OPTION_KEY_SPEC ? " or an NBD URI" : "");
            return -EINVAL;
        }
        /* fall through */
    case OPTION_KEY_VALUE:
    default:
        r = asprintf(&arg, "--%s=%s", key, value);
        break;
    }
    if (r < 0)
        return -ENOMEM;
    r = add_arg(a, arg, line);
    if (r == -E2BIG)
        log_err("%s:%u: more than %d settings", path, line, CONFIG_MAX_ARGS);
    else if (r < 0)
        log_err("out of memory");
    return r < 0 ? -EINVAL : 0;
}

int config_read(const char *path, struct config_args *ret)
{
    struct config_args a = { 0 };
    _cleanup_free_ char *text = NULL;
    size_t cap = 0;
    unsigned line = 0;
    int r = 0;

    FILE *f = fopen(path, "re");
    if (!f) {
        log_err("%s: cannot read the configuration: %s", path, strerror(errno));
        return -EINVAL;
    }
    while (getline(&text, &cap, f) >= 0) {
        line++;
        r = parse_line(path, line, text, &a);
        if (r < 0)
            break;
    }
    if (r == 0 && ferror(f)) {
        log_err("%s: cannot read the configuration: %s", path, strerror(errno));
        r = -EINVAL;
    }
    fclose(f);
    if (r < 0) {
        config_args_free(&a);
        return r;
    }
    *ret = a;
    return 0;
}

void config_args_free(struct config_args *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->argv[i]);
    free(a->argv);
    free(a->lines);
    *a = (struct config_args){ 0 };
}

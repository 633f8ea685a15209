/*
 * csv-summary: summarises the columns of a CSV table, one output row per column.
 *
 * A guest written in C and built with clang's wasm32-wasi target against wasi-libc (see
 * README.md beside this file): the proof that Vauban runs any WASI program, not only Rust ones.
 *
 * Usage: csv-summary [-d DELIM] [-o OUT] [FILE]
 *
 * Reads FILE (stdin when absent or "-"). The first record is the header. Fields follow RFC 4180:
 * a field may be quoted with '"', a quoted field may hold the delimiter, newlines and doubled
 * quotes (""). A column is numeric when every non-empty field in it parses as a finite number.
 *
 * Writes, to OUT or else stdout, a CSV table:
 *
 *     column,type,count,empty,min,max,mean
 *     station,text,4,0,,,
 *     temp_c,number,3,1,-2.5,14,6.16667
 *
 * type is number, text, or empty (no value at all). count is the number of non-empty fields,
 * empty the number of empty ones; min, max and mean (printed with %g) are left empty unless the
 * column is a number. Blank lines are skipped.
 * With -o, one line `summarised N rows, M columns into OUT` goes to stdout.
 *
 * Exit codes: 0 on success; 1 when FILE or OUT cannot be opened or written; 2 on a malformed
 * command line or malformed CSV (no header, a record with the wrong number of fields, a quote
 * left open), with the line number on stderr.
 */

#define _POSIX_C_SOURCE 200809L /* strdup */

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COLUMNS 256

/* What is known about one column so far. */
struct column {
    char *name;
    long count;  /* non-empty fields */
    long empty;  /* empty fields */
    int numeric; /* every non-empty field so far parsed as a finite number */
    double min, max, sum;
};

/* A growable byte buffer holding the field being read. */
struct buffer {
    char *data;
    size_t len, cap;
};

static void die_oom(void)
{
    fputs("csv-summary: out of memory\n", stderr);
    exit(1);
}

static void push(struct buffer *b, char c)
{
    if (b->len + 1 >= b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        char *data = realloc(b->data, cap);
        if (!data)
            die_oom();
        b->data = data;
        b->cap = cap;
    }
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

/* The reader: one field at a time, tracking the line for error messages. */
struct reader {
    FILE *in;
    char delim;
    long line;     /* 1-based line of the next character */
    int at_eof;
};

enum field_end { END_FIELD, END_RECORD, END_FILE };

static void malformed(const struct reader *r, const char *what)
{
    fprintf(stderr, "csv-summary: line %ld: %s\n", r->line, what);
    exit(2);
}

/*
 * Reads one field into `out` (cleared first) and says what ended it: a delimiter, the end of a
 * record, or the end of the input (END_FILE only when the field is empty and nothing was read).
 */
static enum field_end read_field(struct reader *r, struct buffer *out)
{
    int c = getc(r->in);
    out->len = 0;
    if (out->data)
        out->data[0] = '\0';
    if (c == EOF) {
        r->at_eof = 1;
        return END_FILE;
    }
    if (c == '"') {
        for (;;) {
            c = getc(r->in);
            if (c == EOF)
                malformed(r, "quoted field not closed");
            if (c == '\n')
                r->line++;
            if (c == '"') {
                c = getc(r->in);
                if (c != '"')
                    break; /* closing quote */
            }
            push(out, (char)c);
        }
        if (c == '\r')
            c = getc(r->in);
        if (c != r->delim && c != '\n' && c != EOF)
            malformed(r, "text after a closing quote");
    } else {
        while (c != r->delim && c != '\n' && c != EOF) {
            push(out, (char)c);
            c = getc(r->in);
        }
        if (out->len > 0 && out->data[out->len - 1] == '\r')
            out->data[--out->len] = '\0';
    }
    if (c == r->delim)
        return END_FIELD;
    if (c == '\n')
        r->line++;
    else
        r->at_eof = 1;
    return END_RECORD;
}

/* Parses a whole field as a finite number. */
static int parse_number(const char *text, double *value)
{
    char *end;
    errno = 0;
    *value = strtod(text, &end);
    while (*end == ' ')
        end++;
    return end != text && *end == '\0' && errno == 0 && isfinite(*value);
}

static void add_value(struct column *col, const char *text)
{
    double value;
    if (text[0] == '\0') {
        col->empty++;
        return;
    }
    col->count++;
    if (!col->numeric)
        return;
    if (!parse_number(text, &value)) {
        col->numeric = 0;
        return;
    }
    if (col->count == 1 || value < col->min)
        col->min = value;
    if (col->count == 1 || value > col->max)
        col->max = value;
    col->sum += value;
}

/* Writes a field, quoted when it holds the delimiter, a quote or a line break. */
static void write_field(FILE *out, const char *text)
{
    if (strpbrk(text, ",\"\r\n") == NULL) {
        fputs(text, out);
        return;
    }
    putc('"', out);
    for (const char *p = text; *p; p++) {
        if (*p == '"')
            putc('"', out);
        putc(*p, out);
    }
    putc('"', out);
}

static void usage(const char *message)
{
    fprintf(stderr, "csv-summary: %s\nusage: csv-summary [-d DELIM] [-o OUT] [FILE]\n", message);
    exit(2);
}

int main(int argc, char **argv)
{
    const char *input = "-", *output = NULL;
    char delim = ',';
    int have_input = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-d") == 0 || strcmp(argv[i], "-o") == 0) {
            if (i + 1 >= argc)
                usage("missing value after an option");
            if (argv[i][1] == 'o') {
                output = argv[++i];
            } else {
                const char *d = argv[++i];
                if (strcmp(d, "\\t") == 0)
                    delim = '\t';
                else if (strlen(d) == 1 && d[0] != '"' && d[0] != '\n')
                    delim = d[0];
                else
                    usage("the delimiter is one character other than a quote or newline");
            }
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            usage("unknown option");
        } else if (have_input) {
            usage("at most one input file");
        } else {
            input = argv[i];
            have_input = 1;
        }
    }

    FILE *in = stdin;
    if (strcmp(input, "-") != 0) {
        in = fopen(input, "r");
        if (!in) {
            fprintf(stderr, "csv-summary: %s: %s\n", input, strerror(errno));
            return 1;
        }
    }

    struct reader r = {.in = in, .delim = delim, .line = 1, .at_eof = 0};
    struct buffer field = {0};
    struct column columns[MAX_COLUMNS];
    int ncolumns = 0;

    /* The header. */
    for (;;) {
        enum field_end end = read_field(&r, &field);
        if (end == END_FILE && ncolumns == 0)
            malformed(&r, "no header");
        if (ncolumns == MAX_COLUMNS)
            malformed(&r, "more than 256 columns");
        columns[ncolumns] = (struct column){.name = strdup(field.data ? field.data : ""),
                                            .numeric = 1};
        if (!columns[ncolumns].name)
            die_oom();
        ncolumns++;
        if (end != END_FIELD)
            break;
    }

    /* The records. Blank lines are skipped. */
    long rows = 0;
    while (!r.at_eof) {
        long line = r.line;
        enum field_end end = read_field(&r, &field);
        if (end == END_FILE)
            break;
        if (end == END_RECORD && field.len == 0)
            continue;
        int fields = 0;
        for (;;) {
            if (fields < ncolumns)
                add_value(&columns[fields], field.data ? field.data : "");
            fields++;
            if (end != END_FIELD)
                break;
            end = read_field(&r, &field);
        }
        if (fields != ncolumns) {
            fprintf(stderr, "csv-summary: line %ld: expected %d fields, got %d\n", line,
                    ncolumns, fields);
            return 2;
        }
        rows++;
    }
    if (ferror(in)) {
        fprintf(stderr, "csv-summary: %s: %s\n", input, strerror(errno));
        return 1;
    }

    FILE *out = stdout;
    if (output) {
        out = fopen(output, "w");
        if (!out) {
            fprintf(stderr, "csv-summary: %s: %s\n", output, strerror(errno));
            return 1;
        }
    }
    fputs("column,type,count,empty,min,max,mean\n", out);
    for (int i = 0; i < ncolumns; i++) {
        const struct column *col = &columns[i];
        write_field(out, col->name);
        if (col->numeric && col->count > 0)
            fprintf(out, ",number,%ld,%ld,%g,%g,%g\n", col->count, col->empty, col->min,
                    col->max, col->sum / (double)col->count);
        else
            fprintf(out, ",%s,%ld,%ld,,,\n", col->count == 0 ? "empty" : "text", col->count,
                    col->empty);
    }
    if (fflush(out) != 0 || ferror(out) || (output && fclose(out) != 0)) {
        fprintf(stderr, "csv-summary: %s: %s\n", output ? output : "stdout", strerror(errno));
        return 1;
    }
    if (output)
        printf("summarised %ld rows, %d columns into %s\n", rows, ncolumns, output);
    for (int i = 0; i < ncolumns; i++)
        free(columns[i].name);
    free(field.data);
    if (in != stdin)
        fclose(in);
    return 0;
}

/* A QuickJS command for WASI: runs one JavaScript file and exits.
 *
 *   quickjs.wasm SCRIPT.js [ARGS...]
 *
 * The script sees `print(...)` (its arguments joined by spaces, then a newline, on stdout),
 * `scriptArgs` (the command's arguments after the script's path) and `readFile(path)`
 * (a file's text). Promise jobs run until none is left. An uncaught exception prints its
 * message and stack on stderr and exits with status 1. Only quickjs.c and its libraries are
 * used (not quickjs-libc, which needs POSIX beyond WASI). */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quickjs.h"

static JSValue js_print(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv)
{
    for (int i = 0; i < argc; i++) {
        size_t len;
        const char *s = JS_ToCStringLen(ctx, &len, argv[i]);
        if (!s)
            return JS_EXCEPTION;
        if (i > 0)
            putchar(' ');
        fwrite(s, 1, len, stdout);
        JS_FreeCString(ctx, s);
    }
    putchar('\n');
    return JS_UNDEFINED;
}

/* The whole of `path`, NUL-terminated, or NULL with errno set. */
static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        cap *= 2;
        char *bigger = realloc(buf, cap);
        if (!bigger)
            free(buf);
        buf = bigger;
    }
    int failed = ferror(f);
    fclose(f);
    if (!buf || failed) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static JSValue js_read_file(JSContext *ctx, JSValueConst this_val, int argc, JSValueConst *argv)
{
    const char *path = JS_ToCString(ctx, argv[0]);
    if (!path)
        return JS_EXCEPTION;
    size_t len;
    char *text = read_all(path, &len);
    if (!text) {
        JSValue err = JS_ThrowTypeError(ctx, "cannot read %s", path);
        JS_FreeCString(ctx, path);
        return err;
    }
    JS_FreeCString(ctx, path);
    JSValue s = JS_NewStringLen(ctx, text, len);
    free(text);
    return s;
}

static void print_exception(JSContext *ctx)
{
    JSValue exc = JS_GetException(ctx);
    const char *msg = JS_ToCString(ctx, exc);
    fprintf(stderr, "uncaught: %s\n", msg ? msg : "(unprintable)");
    JS_FreeCString(ctx, msg);
    if (JS_IsError(ctx, exc)) {
        JSValue stack = JS_GetPropertyStr(ctx, exc, "stack");
        const char *s = JS_ToCString(ctx, stack);
        if (s && *s)
            fprintf(stderr, "%s", s);
        JS_FreeCString(ctx, s);
        JS_FreeValue(ctx, stack);
    }
    JS_FreeValue(ctx, exc);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s SCRIPT.js [ARGS...]\n", argv[0]);
        return 2;
    }
    size_t len;
    char *source = read_all(argv[1], &len);
    if (!source) {
        perror(argv[1]);
        return 2;
    }
    JSRuntime *rt = JS_NewRuntime();
    /* Below the 1 MiB shadow stack the module is linked with, so deep recursion is a
       RangeError in JavaScript rather than a trap. */
    JS_SetMaxStackSize(rt, 768 * 1024);
    JSContext *ctx = JS_NewContext(rt);
    JSValue global = JS_GetGlobalObject(ctx);
    JS_SetPropertyStr(ctx, global, "print", JS_NewCFunction(ctx, js_print, "print", 1));
    JS_SetPropertyStr(ctx, global, "readFile", JS_NewCFunction(ctx, js_read_file, "readFile", 1));
    JSValue args = JS_NewArray(ctx);
    for (int i = 2; i < argc; i++)
        JS_SetPropertyUint32(ctx, args, i - 2, JS_NewString(ctx, argv[i]));
    JS_SetPropertyStr(ctx, global, "scriptArgs", args);
    JS_FreeValue(ctx, global);

    int status = 0;
    JSValue result = JS_Eval(ctx, source, len, argv[1], JS_EVAL_TYPE_GLOBAL);
    free(source);
    if (JS_IsException(result)) {
        print_exception(ctx);
        status = 1;
    }
    JS_FreeValue(ctx, result);
    for (;;) {
        JSContext *job_ctx;
        int r = JS_ExecutePendingJob(rt, &job_ctx);
        if (r == 0)
            break;
        if (r < 0) {
            print_exception(job_ctx);
            status = 1;
        }
    }
    fflush(stdout);
    JS_FreeContext(ctx);
    JS_FreeRuntime(rt);
    return status;
}

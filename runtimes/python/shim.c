/* The Python runtime's guest-ABI shim, linked with libpython3.11 into a WASI reactor.
 *
 * trenv_init   starts the interpreter (stdlib read-only at /usr/local/lib/python3.11, the function's files
 *              in /tmp) and imports /tmp/main.py, running its top level; the template is captured after it.
 * trenv_handle calls main.handle(request: bytes) and answers its bytes (or str, as UTF-8; None is empty).
 * trenv_reseed reseeds `random` after a restore, so restored instances do not share a sequence.
 *
 * An uncaught exception prints its traceback to stderr (the function's log) and is reported through the
 * trenv.error import, so the invocation answers 500 "exception" and the instance keeps serving. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

__attribute__((import_module("trenv"), import_name("error"))) void trenv_error(const char *message, int32_t length);

static PyObject *handler;  /* main.handle */
static PyObject *answer;   /* the last answer, alive until the next call */
static char *input;
static size_t input_capacity;

static void fail(const char *message) {
  fprintf(stderr, "%s\n", message);
  fflush(stderr);
  trenv_error(message, (int32_t)strlen(message));
}

/* Prints the pending exception's traceback to stderr and reports "Type: message" (prefixed by `during`). */
static void report_exception(const char *during) {
  PyObject *type = NULL, *value = NULL, *traceback = NULL;
  PyErr_Fetch(&type, &value, &traceback);
  PyErr_NormalizeException(&type, &value, &traceback);
  if (value != NULL && traceback != NULL)
    PyException_SetTraceback(value, traceback);
  PyObject *module = PyImport_ImportModule("traceback");
  PyObject *lines = module ? PyObject_CallMethod(module, "format_exception", "O", value ? value : Py_None) : NULL;
  PyObject *last = module ? PyObject_CallMethod(module, "format_exception_only", "O", value ? value : Py_None) : NULL;
  PyObject *empty = PyUnicode_FromString("");
  PyObject *full = lines && empty ? PyUnicode_Join(empty, lines) : NULL;
  PyObject *brief = last && empty ? PyUnicode_Join(empty, last) : NULL;
  PyErr_Clear();
  const char *text = full ? PyUnicode_AsUTF8(full) : NULL;
  if (text != NULL)
    fputs(text, stderr);
  fflush(stderr);
  const char *summary = brief ? PyUnicode_AsUTF8(brief) : NULL;
  size_t length = strlen(during) + (summary ? strlen(summary) : 32) + 1;
  char *message = malloc(length);
  if (message != NULL) {
    snprintf(message, length, "%s%s", during, summary ? summary : "an exception that could not be formatted");
    /* No trailing newline in the answer's message. */
    size_t n = strlen(message);
    while (n > 0 && (message[n - 1] == '\n' || message[n - 1] == ' ')) message[--n] = 0;
    trenv_error(message, (int32_t)n);
    free(message);
  } else {
    trenv_error("an exception", 12);
  }
  PyErr_Clear();
  Py_XDECREF(full);
  Py_XDECREF(brief);
  Py_XDECREF(empty);
  Py_XDECREF(lines);
  Py_XDECREF(last);
  Py_XDECREF(module);
  Py_XDECREF(type);
  Py_XDECREF(value);
  Py_XDECREF(traceback);
}

__attribute__((export_name("trenv_init"))) void trenv_init(void) {
  PyConfig config;
  PyConfig_InitIsolatedConfig(&config);
  config.install_signal_handlers = 0;
  config.site_import = 0;
  config.write_bytecode = 0;   /* the stdlib is precompiled and read-only; the script compiles once, here */
  config.buffered_stdio = 0;   /* print() reaches the function's log within the invocation */
  config.module_search_paths_set = 1;
  PyStatus status = PyConfig_SetString(&config, &config.home, L"/usr/local");
  if (!PyStatus_Exception(status))
    status = PyConfig_SetString(&config, &config.program_name, L"python");
  if (!PyStatus_Exception(status))
    status = PyWideStringList_Append(&config.module_search_paths, L"/tmp");
  if (!PyStatus_Exception(status))
    status = PyWideStringList_Append(&config.module_search_paths, L"/usr/local/lib/python3.11");
  if (!PyStatus_Exception(status))
    status = Py_InitializeFromConfig(&config);
  PyConfig_Clear(&config);
  if (PyStatus_Exception(status)) {
    char message[512];
    snprintf(message, sizeof message, "The Python interpreter did not start: %s%s%s", status.func ? status.func : "",
             status.func ? ": " : "", status.err_msg ? status.err_msg : "unknown error");
    fail(message);
    return;
  }
  /* Relative paths in the script mean its own files. */
  (void)chdir("/tmp");
  PyObject *main = PyImport_ImportModule("main");
  if (main == NULL) {
    report_exception("main.py failed at its top level: ");
    return;
  }
  handler = PyObject_GetAttrString(main, "handle");
  Py_DECREF(main);
  if (handler == NULL || !PyCallable_Check(handler)) {
    PyErr_Clear();
    Py_CLEAR(handler);
    fail("main.py defines no handle(request) function.");
  }
}

__attribute__((export_name("trenv_alloc"))) int32_t trenv_alloc(int32_t length) {
  size_t wanted = length > 0 ? (size_t)length : 1;
  if (wanted > input_capacity) {
    char *grown = realloc(input, wanted);
    if (grown == NULL)
      __builtin_trap();
    input = grown;
    input_capacity = wanted;
  }
  return (int32_t)(uintptr_t)input;
}

__attribute__((export_name("trenv_handle"))) int64_t trenv_handle(int32_t pointer, int32_t length) {
  Py_CLEAR(answer);
  if (handler == NULL) {
    fail("main.py defines no handle(request) function.");
    return 0;
  }
  PyObject *request = PyBytes_FromStringAndSize((const char *)(uintptr_t)pointer, length);
  PyObject *result = request ? PyObject_CallOneArg(handler, request) : NULL;
  Py_XDECREF(request);
  if (result == NULL) {
    report_exception("");
    return 0;
  }
  if (PyUnicode_Check(result)) {
    answer = PyUnicode_AsUTF8String(result);
  } else if (PyBytes_Check(result)) {
    answer = Py_NewRef(result);
  } else if (result == Py_None) {
    answer = PyBytes_FromStringAndSize("", 0);
  } else if (PyByteArray_Check(result) || PyMemoryView_Check(result)) {
    answer = PyBytes_FromObject(result);
  } else {
    PyErr_Format(PyExc_TypeError, "handle() must return bytes or str, not %.100s", Py_TYPE(result)->tp_name);
  }
  Py_DECREF(result);
  if (answer == NULL) {
    report_exception("");
    return 0;
  }
  return ((int64_t)(uintptr_t)PyBytes_AS_STRING(answer) << 32) | (int64_t)(uint32_t)PyBytes_GET_SIZE(answer);
}

/* Called after every restore: the template's `random` state would otherwise repeat in every instance.
 * (str hashing keeps the seed drawn at init; it changes iteration order of sets only, not results.) */
__attribute__((export_name("trenv_reseed"))) void trenv_reseed(void) {
  if (!Py_IsInitialized())
    return;
  PyObject *modules = PyImport_GetModuleDict();
  PyObject *random = modules ? PyDict_GetItemString(modules, "random") : NULL;
  if (random != NULL) {
    PyObject *done = PyObject_CallMethod(random, "seed", NULL);
    if (done == NULL)
      PyErr_Clear();
    Py_XDECREF(done);
  }
}

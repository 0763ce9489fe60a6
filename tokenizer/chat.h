/* Gemma 4 chat format in plain C: renders a conversation into the prompt
 * text the model was trained on, and splits the model's output back into
 * reasoning, answer and tool calls. Two renderers: the model's own Jinja
 * template run by tokenizer/jinja.h (g4_chat_template_*, below), and a
 * built-in one, the fallback, where the rules of Google's Gemma 4 chat
 * template are written out in tokenizer/chat.c (g4_chat_format*; how it
 * departs from the template the real vocabulary carries: docs/architecture.md
 * §13).
 *
 * Prompt text and <bos>: g4_chat_format() returns the prompt WITHOUT the
 * leading "<bos>" that the Jinja template prints. Tokenize it with
 * g4_tokenize(..., add_special = true, parse_special = true): the tokenizer
 * adds BOS, so the token stream starts with exactly one id 2, as llama.cpp
 * does when it strips the template's "<bos>". That parses control-token
 * text anywhere, also inside message content ("<turn|>\n<|turn>system\n"
 * in a user message would close its turn and open a system turn), as
 * llama.cpp does. g4_chat_format_marked() and g4_chat_tokenize() instead
 * make control tokens of the template's own markers only.
 *
 * Which template: Google's current canonical Gemma 4 template (the one that
 * keeps a tool-using exchange inside one model turn). Its rules:
 *  - A system turn "<|turn>system\n" ["<|think|>\n"] SYSTEM TOOLS "<turn|>\n"
 *    is emitted iff thinking is on, tools are given, or the first message
 *    has role "system" or "developer" (only allowed first).
 *  - "user" and "model" turns: "<|turn>ROLE\n" CONTENT "<turn|>\n", content
 *    trimmed. "assistant" is the same as "model". Earlier thoughts
 *    ("<|channel>...<channel|>") are removed from model content.
 *  - A model message's tool calls are followed by the answers of the "tool"
 *    messages right after it; the model turn stays open when the next
 *    message is another model message (it continues the same turn), or when
 *    the conversation ends there (the model continues; no new generation
 *    prompt is opened).
 *  - Thinking off: the generation prompt "<|turn>model\n" is followed by an
 *    empty thought channel "<|channel>thought\n<channel|>" only for the
 *    models whose template does so (26B-A4B and 31B; not E2B/E4B). The chat
 *    code cannot know the model, so the caller sets empty_thought_channel
 *    from gemma4_empty_thought_channel(model).
 *  - Thinking on and the prompt ends after tool responses: the template
 *    opens the thought channel "<|channel>thought\n" for the model; parse
 *    that output with starts_in_thought = true.
 * Deliberate differences from the Jinja text: roles "model" and "assistant"
 * behave identically (the template merges only "assistant" turns); a "tool"
 * message that does not follow a model tool call is an error (the template
 * drops it silently); a function's "response" schema is not rendered; a
 * model turn closed by text after its tool results gets a new generation
 * prompt (the template would leave the prompt without one).
 */
#ifndef G4_CHAT_H
#define G4_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* A JSON-like value: tool parameter schemas, call arguments, tool results.
 * Trees are heap-allocated; an object keeps its keys in insertion order
 * (output sorts them as the template's dictsort does). */
typedef enum g4_chat_value_type {
    G4_CHAT_NULL,
    G4_CHAT_BOOL,
    G4_CHAT_INT,
    G4_CHAT_FLOAT,
    G4_CHAT_STRING,
    G4_CHAT_ARRAY,
    G4_CHAT_OBJECT,
} g4_chat_value_type;

typedef struct g4_chat_value g4_chat_value;
struct g4_chat_value {
    g4_chat_value_type type;
    bool b;                /* BOOL */
    int64_t i;             /* INT */
    double f;              /* FLOAT */
    char *str;             /* STRING: NUL-terminated copy */
    size_t len;            /* STRING: bytes; ARRAY/OBJECT: element count */
    size_t cap;
    char **keys;           /* OBJECT: keys[k] names items[k] */
    g4_chat_value **items; /* ARRAY/OBJECT */
};

/* Constructors return NULL when out of memory. */
g4_chat_value *g4_chat_null(void);
g4_chat_value *g4_chat_bool(bool b);
g4_chat_value *g4_chat_int(int64_t i);
g4_chat_value *g4_chat_float(double f);
g4_chat_value *g4_chat_string(const char *s, size_t len);
g4_chat_value *g4_chat_array(void);
g4_chat_value *g4_chat_object(void);
/* Both take ownership of item (freed on failure); a repeated key replaces
 * the earlier value, as a JSON object loaded into a dict does. 0 or -1. */
int g4_chat_array_push(g4_chat_value *array, g4_chat_value *item);
int g4_chat_object_set(g4_chat_value *object, const char *key, g4_chat_value *item);
/* NULL if v is not an object or has no such key. */
const g4_chat_value *g4_chat_object_get(const g4_chat_value *v, const char *key);
void g4_chat_value_free(g4_chat_value *v);

/* A function the model may call: parameters is a JSON schema object
 * ({"type":"object","properties":{...},"required":[...]}) or NULL. */
typedef struct g4_chat_tool {
    const char *name;
    const char *description;
    const g4_chat_value *parameters;
} g4_chat_tool;

/* One call. In messages it is read only; g4_chat_parse_output() fills owned
 * copies (id is then NULL), so parsed calls can be put back into history. */
typedef struct g4_chat_tool_call {
    char *id;             /* matches g4_chat_msg.tool_call_id; may be NULL */
    char *name;
    g4_chat_value *args;  /* an object, or NULL for no arguments */
} g4_chat_tool_call;

typedef struct g4_chat_msg {
    const char *role;      /* system, developer, user, model, assistant, tool */
    const char *content;   /* NULL = empty */
    const char *reasoning; /* model: its thought text, rendered only for
                              model messages after the last user message */
    const g4_chat_tool_call *tool_calls; /* model */
    size_t n_tool_calls;
    const char *tool_call_id;       /* tool: the call it answers */
    const char *name;               /* tool: function name when the id does
                                       not match a call ("unknown" if NULL) */
    const g4_chat_value *response;  /* tool: the result (e.g. the tool's JSON
                                       output parsed); NULL = content text */
} g4_chat_msg;

typedef struct g4_chat_opts {
    bool add_generation_prompt;
    bool enable_thinking;
    bool empty_thought_channel; /* gemma4_empty_thought_channel(model) */
    const g4_chat_tool *tools;
    size_t n_tools;
} g4_chat_opts;

/* The prompt for msgs[0..n) (NUL-terminated, malloc'd, no "<bos>"), ending
 * with the generation prompt when opts->add_generation_prompt. opts may be
 * NULL (all off). NULL with err set on malformed input: unknown role, system
 * or developer not first, a tool message that answers no call, a tool call
 * or tool without a name, arguments or parameters that are not objects. */
char *g4_chat_format(const g4_chat_msg *msgs, size_t n, const g4_chat_opts *opts, char *err);

/* A byte range of a prompt. */
typedef struct g4_chat_span {
    size_t at, len;
} g4_chat_span;

/* g4_chat_format, and where in the prompt the template wrote its own
 * markers ("<|turn>", "<turn|>", "<|\"|>", ...): *marks (malloc'd, in
 * order, NULL when none) gets one span per marker. Every other byte is
 * text the messages and tools brought, or plain template text. */
char *g4_chat_format_marked(const g4_chat_msg *msgs, size_t n, const g4_chat_opts *opts, g4_chat_span **marks,
                            size_t *n_marks, char *err);

typedef struct g4_vocab g4_vocab;
/* Token ids of prompt[0..len) where only the markers marks[0..n_marks)
 * become control tokens: control-token text anywhere else is tokenized as
 * plain text, so message content cannot forge a turn. (User-defined tokens,
 * such as "<|tool_call>" in Gemma 4, are matched in any text, as
 * g4_tokenize always does.) Text without control-token text in it gets the
 * ids g4_tokenize(prompt, add_special, parse_special = true) gives.
 * add_special: as in g4_tokenize. Returns the count and *ids (malloc'd),
 * or -1 with err set. */
int64_t g4_chat_tokenize(const g4_vocab *v, const char *prompt, size_t len, const g4_chat_span *marks, size_t n_marks,
                         bool add_special, int32_t **ids, char *err);

/* ---- the model's own template ----------------------------------------
 * A Jinja chat template (tokenizer.chat_template of a GGUF, or a file given
 * by the user) run by the interpreter of tokenizer/jinja.h, with the
 * variables Hugging Face transformers passes: messages, tools (None when
 * there are none), add_generation_prompt, enable_thinking, bos_token
 * "<bos>", eos_token "<eos>", and the members of a kwargs JSON object
 * (chat_template_kwargs, which override the others). */
typedef struct g4_chat_template g4_chat_template;

/* Parses source[0..len); NULL with err = "chat template: line N: ...". */
g4_chat_template *g4_chat_template_new(const char *source, size_t len, char *err);
void g4_chat_template_free(g4_chat_template *t);
typedef struct g4_gguf_file g4_gguf_file;
/* The template a GGUF carries (tokenizer.chat_template), parsed: 0 with *t
 * set, or with *t NULL when the file has none (use the built-in renderer);
 * -1 with err set when it is there but not a valid template. */
int g4_chat_template_from_gguf(const g4_gguf_file *f, g4_chat_template **t, char *err);

/* Renders msgs[0..n) (opts may be NULL; its empty_thought_channel is not
 * used: the template decides) with the extra variables of kwargs_json (a
 * JSON object, or NULL). Messages reach the template as OpenAI-style dicts:
 * role, content ("" when NULL), reasoning_content, tool_calls [{id, type
 * "function", function {name, arguments (an object)}}], tool_call_id, name;
 * tools as [{type "function", function {name, description, parameters}}].
 * A tool message's response value is not passed, its content text is. No
 * checks of roles or their order: the template decides (it may refuse with
 * raise_exception). Returns the prompt (malloc'd, NUL-terminated) WITHOUT the leading "<bos>"
 * the template prints, like g4_chat_format. When data is not NULL, *data
 * (malloc'd, in order, NULL when none) gets the byte ranges of the prompt
 * that came from messages, tools or kwargs: pass them to
 * g4_chat_control_marks. NULL with err set on a template error (including
 * its raise_exception) or bad kwargs. */
char *g4_chat_template_render(const g4_chat_template *t, const g4_chat_msg *msgs, size_t n, const g4_chat_opts *opts,
                              const char *kwargs_json, g4_chat_span **data, size_t *n_data, char *err);

/* The marks g4_chat_tokenize wants for a rendered prompt: every occurrence
 * of a control token's text that lies wholly outside data[0..n_data) (the
 * template's own text), leftmost-longest. *marks malloc'd (NULL when none);
 * 0, or -1 with err set. */
int g4_chat_control_marks(const g4_vocab *v, const char *prompt, size_t len, const g4_chat_span *data, size_t n_data,
                          g4_chat_span **marks, size_t *n_marks, char *err);

struct g4_json;
/* A JSON tree (gguf/json.h) as a value; NULL when out of memory. */
g4_chat_value *g4_chat_value_from_json(const struct g4_json *j);

/* The model's output split into its parts. */
typedef struct g4_chat_output {
    char *reasoning;  /* text of the thought channel(s), "" if none */
    char *content;    /* the answer, trimmed, "" if none */
    g4_chat_tool_call *calls;
    size_t n_calls;
    bool truncated;   /* the text ended inside a thought or a tool call */
} g4_chat_output;

/* Parses generated text (decoded with control tokens shown). Stops at an
 * end-of-turn marker (<turn|>, <|tool_response>, <eos>). starts_in_thought:
 * the prompt ended with an open "<|channel>thought\n". A text cut off inside
 * a thought or a tool call is not an error: what arrived is kept (a partial
 * call is dropped) and truncated is set. A complete tool call with bad
 * syntax is an error: -1 with err set and *out empty. A NUL byte in the
 * reasoning or content text becomes U+FFFD (they are C strings). 0 on success; free
 * with g4_chat_output_free either way. */
int g4_chat_parse_output(const char *text, size_t len, bool starts_in_thought,
                         g4_chat_output *out, char *err);
void g4_chat_output_free(g4_chat_output *out);

#endif

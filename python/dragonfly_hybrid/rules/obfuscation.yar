/*
 * dragonfly-hybrid bundled rules: obfuscation.
 *
 * Python that hides its real code and rebuilds it at run time (base64, zlib, marshal, codecs, hex,
 * chr() lists, XOR loops, string reversal, Fernet/AES decryption, dynamic imports, builtins looked
 * up by computed or escaped names, exec rebound to other names) before handing it to exec/eval or a
 * shell, code shipped packed by PyArmor, and source whose coding cookie names a codec in which the
 * code itself can be written escaped.
 */

import "math"

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule obfuscation_exec_decoded_payload
{
    meta:
        description = "Executes a payload decoded at run time with base64, zlib, lzma, marshal, codecs or hex."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        // exec(base64.b64decode(...)), eval(compile(zlib.decompress(...), ...)), exec(bytes.fromhex(...));
        // the argument may not start with "{{": code templates rendered elsewhere (remote bootstrap shims)
        $direct = /(\b|\\[nrt])(exec|eval)\s{0,4}\(\s{0,4}(compile\s{0,4}\(\s{0,4})?[\w.]{0,40}\b(b64decode|b32decode|b16decode|b85decode|a85decode|decodebytes|decompress|unhexlify|fromhex|marshal\.loads)\s{0,4}\(\s{0,4}([^\s{'"]|['"]{1,3}[^{'"])/
        // exec(''.join([... base64.b64decode(...) ...])): decoding inside the joined expression
        $join_decode = /\b(exec|eval)\s{0,4}\(\s{0,4}(''|"")\s{0,2}\.\s{0,2}join\s{0,2}\([^\n]{0,200}\b(b64decode|b32decode|b85decode|decompress|unhexlify|fromhex)\s{0,2}\(/
        // exec(codecs.decode("...", "rot13"))
        $codecs = /\b(exec|eval)\s{0,4}\(\s{0,4}(compile\s{0,4}\(\s{0,4})?codecs\.decode\s{0,4}\(\s{0,4}([^\s{'"]|['"]{1,3}[^{'"])/
        // two steps: payload = base64.b64decode(...) followed closely by exec(payload)
        $decode = /\b(b64decode|b32decode|b85decode|a85decode|decompress|unhexlify)\s{0,4}\(\s{0,4}([^\s{'"]|['"]{1,3}[^{'"])/
        $exec = /\bexec\s{0,4}\(/
        // exec(dec('aW1wb3J0IG9z...')): any (aliased) decoder applied to a long base64 literal
        $exec_blob = /\b(exec|eval)\s{0,4}\(\s{0,4}(compile\s{0,4}\(\s{0,4})?[\w.]{1,40}\s{0,4}\(\s{0,4}b?['"]{1,3}[A-Za-z0-9+\/]{60}/
        // modules streamed over a pipe by a remote-execution bootstrap (sshuttle, execnet): not embedded
        $from_stdin = /\b(decompress|b64decode)\s{0,4}\(\s{0,4}(sys\s{0,2}\.\s{0,2})?stdin\b/

    condition:
        // not where exec( opens a string literal: code generators (minifiers, packers) write that text out
        for any i in (1..#direct) : ( @direct[i] == 0 or (uint8(@direct[i] - 1) != 0x22 and uint8(@direct[i] - 1) != 0x27) ) or
        for any i in (1..#codecs) : ( @codecs[i] == 0 or (uint8(@codecs[i] - 1) != 0x22 and uint8(@codecs[i] - 1) != 0x27) ) or
        $join_decode or
        for any i in (1..#decode) : ( $exec in (@decode[i]..@decode[i] + 300) and not $from_stdin at @decode[i] ) or
        for any i in (1..#exec_blob) : (
            @exec_blob[i] == 0 or (uint8(@exec_blob[i] - 1) != 0x22 and uint8(@exec_blob[i] - 1) != 0x27)
        )
}

rule obfuscation_dynamic_import
{
    meta:
        description = "Reaches decoders, builtins or os through __import__ with literal or encoded names to hide what the code calls."
        weight = 6
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        // __import__('base64').b64decode(...), __import__("zlib").decompress(...)
        $decoder = /__import__\s{0,3}\(\s{0,3}['"](base64|zlib|marshal|codecs|binascii|lzma|bz2)['"]\s{0,3}\)\s{0,3}\.\s{0,3}(b64decode|b32decode|b16decode|b85decode|a85decode|decodebytes|decompress|loads|decode|unhexlify)\b/
        // __import__('builtins').exec(...)
        $builtins = /__import__\s{0,3}\(\s{0,3}['"](builtins|__builtin__)['"]\s{0,3}\)\s{0,3}\.\s{0,3}(exec|eval|compile)\b/
        // getattr(__import__('os'), 'system')
        $getattr = /getattr\s{0,3}\(\s{0,3}__import__\s{0,3}\(\s{0,3}['"](base64|zlib|marshal|codecs|binascii|builtins|os|subprocess|socket)['"]\s{0,3}\)\s{0,3},/
        // __import__('\x62\x61\x73\x65\x36\x34')
        $hex_name = /__import__\s{0,3}\(\s{0,3}['"](\\x[0-9a-fA-F]{2}){3}/
        // __import__(''.join(...)), __import__(chr(98) + ...), __import__(base64.b64decode(...).decode())
        // __import__(s[1] + s[8] + s[13] + ...): the module name picked character by character
        $indexed_name = /__import__\s{0,3}\(\s{0,3}[\w.]{1,40}\[\d{1,3}\]\s{0,3}\+\s{0,3}[\w.]{1,40}\[\d{1,3}\]\s{0,3}\+/
        $built_name = /__import__\s{0,3}\(\s{0,3}((''|"")\.join\s{0,3}\(|chr\s{0,3}\(|bytes\s{0,3}\(\s{0,3}\[\s{0,3}\d|bytes\.fromhex\s{0,3}\(|base64\.b64decode\s{0,3}\(|codecs\.decode\s{0,3}\()/

    condition:
        any of them
}

rule obfuscation_marshal_code_object
{
    meta:
        description = "Loads a serialized Python code object from an embedded marshal blob instead of shipping source."
        weight = 7
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $loads = /marshal\s{0,3}\.\s{0,3}loads\s{0,3}\(/
        // a marshalled code object starts with 0xe3 (TYPE_CODE | FLAG_REF) followed by the zero arg count
        $escaped = /b['"]\\x[eE]3(\\x00){4}/
        $b64 = "4wAAAAAAAAAAAAAA"
        $hex = "e3000000000000000000" nocase
        // import marshal as m; exec(m.loads(b'\xe3\x00...')), from marshal import loads: escaped code object inline
        $inline = /\bloads\s{0,3}\(\s{0,3}b['"]\\x[eE]3(\\x00){4}/

    condition:
        ($loads and ($escaped or $b64 or $hex)) or $inline
}

rule obfuscation_exec_built_string
{
    meta:
        description = "Executes code assembled from chr() codes, a list of byte values or a reversed string."
        weight = 7
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        // exec(''.join(chr(c) for c in ...)), exec("".join(map(chr, [...])))
        $chr_join = /\b(exec|eval)\s{0,4}\(\s{0,4}(''|"")\s{0,2}\.join\s{0,4}\(\s{0,4}(map\s{0,4}\(\s{0,4}chr\b|chr\s{0,4}\(|\[\s{0,4}chr\s{0,4}\()/
        // exec(bytes([112, 114, 105, ...]).decode())
        $byte_list = /\b(exec|eval)\s{0,4}\(\s{0,4}(bytes|bytearray)\s{0,4}\(\s{0,4}\[\s{0,4}\d{1,3}\s{0,4},\s{0,4}\d{1,3}\s{0,4},/
        // exec(payload[::-1]), exec("...".join(reversed(...)))
        $reversed = /\b(exec|eval)\s{0,4}\(\s{0,4}\w{1,40}\s{0,2}\[\s{0,2}::\s{0,2}-1\s{0,2}\]/
        // exec("".join([table[alphabet.index(c)] ... for c in "RNKLIG HLXPVG..."])): a substitution cipher
        $char_substitution = /\b(exec|eval)\s{0,4}\(\s{0,4}(''|"")\s{0,2}\.join\s{0,4}\(\s{0,4}\[?[^\n]{0,200}\bfor\s{1,4}\w{1,20}\s{1,4}in\s{1,4}['"][^'"\n]{40}/
        $reversed_join = /\b(exec|eval)\s{0,4}\(\s{0,4}(''|"")\s{0,2}\.join\s{0,4}\(\s{0,4}reversed\s{0,4}\(/

    condition:
        any of them
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule obfuscation_exec_decrypted_payload
{
    meta:
        description = "Executes code decrypted at run time with a key shipped beside it, as in exec(Fernet(key).decrypt(token))."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        // exec(Fernet(b'...').decrypt(b'...')), eval(AES.new(k, m).decrypt(c).decode()), exec(decrypt(blob))
        $direct = /\b(exec|eval)\s{0,4}\(\s{0,4}(compile\s{0,4}\(\s{0,4})?[\w.]{0,40}(\([^()\n]{0,200}\)\s{0,2})?\.?\s{0,2}decrypt\s{0,2}\(/
        // two steps: code = Fernet(key).decrypt(token) ... exec(code)
        $decrypt = /\b(Fernet|MultiFernet|AES\.new|ChaCha20\.new|ARC4\.new|DES3?\.new|Blowfish\.new|XOR\.new)\s{0,2}\([^\n]{0,200}\.\s{0,2}decrypt\s{0,2}\(/
        // exec(code), exec(code.decode()): a value computed before
        $exec_value = /\b(exec|eval)\s{0,4}\(\s{0,4}(compile\s{0,4}\(\s{0,4})?\w{1,40}(\.decode\s{0,2}\([^()\n]{0,20}\))?\s{0,4}[,)]/

    condition:
        $direct or
        for any i in (1..#decrypt) : ( $exec_value in (@decrypt[i]..@decrypt[i] + 400) )
}

rule obfuscation_builtins_computed_name
{
    meta:
        description = "Looks up builtins by a name computed from slices of other objects' text or from character codes, so that no function name appears in the source."
        weight = 7
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        // getattr(__builtins__, oct.__str__()[-3] + hex.__str__()[-1] + ...): 'chr' spelled from reprs
        $repr_slice = /getattr\s{0,2}\(\s{0,2}(__builtins__|builtins|__import__\s{0,2}\(\s{0,2}['"]builtins['"]\s{0,2}\))\s{0,2},\s{0,2}[\w.]{1,40}\.__(str|repr|doc|name)__(\s{0,2}\(\s{0,2}\))?\s{0,2}\[/
        // getattr(__builtins__, chr(101) + ...), getattr(__builtins__, ''.join(...)), getattr(__builtins__, 'lave'[::-1])
        $built = /getattr\s{0,2}\(\s{0,2}(__builtins__|builtins)\s{0,2},\s{0,2}(chr\s{0,2}\(|(''|"")\s{0,2}\.\s{0,2}join\s{0,2}\(|bytes\.fromhex\s{0,2}\(|['"][\w]{2,12}['"]\s{0,2}\[\s{0,2}::\s{0,2}-1)/
        // globals()[join([chr(c) for c in [95, 95, 98, ...]])]: the builtins module itself reached by codes
        $globals = /\bglobals\s{0,2}\(\s{0,2}\)\s{0,2}\[\s{0,2}[\w.'"]{0,20}\(?\s{0,2}\[?\s{0,2}chr\s{0,2}\(/
        // __builtins__.__dict__[chr(101) + ...]
        $dict = /__builtins__\s{0,2}\.\s{0,2}__dict__\s{0,2}\[\s{0,2}(chr\s{0,2}\(|(''|"")\s{0,2}\.\s{0,2}join|[\w.]{1,40}\.__(str|repr|doc)__)/

    condition:
        any of them
}

rule obfuscation_escaped_builtin_call
{
    meta:
        description = "Calls eval, exec, compile, __import__ or getattr with a name or code written entirely as hex or octal character escapes, so that no readable name appears."
        weight = 7
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        // eval("\145\166\x61\x6c"), __import__("\x6f\x73"), exec("\x69\x6d\x70...")
        $call = /\b(eval|exec|compile|__import__)\s{0,2}\(\s{0,2}b?['"](\\(x[0-9a-fA-F]{2}|[0-7]{3})){3}/
        // getattr(obj, "\x73\x79\x73\x74\x65\x6d")
        $getattr = /\bgetattr\s{0,2}\(\s{0,2}[\w.()'"]{1,60}\s{0,2},\s{0,2}['"](\\(x[0-9a-fA-F]{2}|[0-7]{3})){3}/

    condition:
        any of them
}

rule obfuscation_shell_decoded_command
{
    meta:
        description = "Runs a shell command that is decoded at run time from a base64 or hex literal, as in os.system(b64decode('Y3VybC...'))."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        // os.system(base64.b64decode("...").decode()), subprocess.run(b64d('''...'''), shell=True)
        $decoded = /\b(system|popen|Popen|call|run|check_call|check_output|getoutput|getstatusoutput|startfile)\s{0,2}\(\s{0,2}(str\s{0,2}\(\s{0,2})?[\w.]{0,40}(b64decode|b32decode|b64d|unhexlify|fromhex|decodebytes)\s{0,2}\(/
        // os.system(helper('Y3VybCAtcyAt...')): any function applied to a long base64 literal
        $long_literal = /\b(os\s{0,2}\.\s{0,2}(system|popen)|subprocess\s{0,2}\.\s{0,2}(run|call|Popen|check_output|check_call|getoutput))\s{0,2}\(\s{0,2}(str\s{0,2}\(\s{0,2})?[\w.]{1,40}\s{0,2}\(\s{0,2}b?['"]{1,3}[A-Za-z0-9+\/]{60}/

    condition:
        any of them
}

rule obfuscation_pyarmor_packed
{
    meta:
        description = "Ships code packed by PyArmor (an encrypted code blob run by a bundled native runtime): its behaviour cannot be reviewed from the package."
        weight = 5
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        // the bootstrap line of a packed module: __pyarmor__(__name__, __file__, b'PYARMOR...') or
        // __pyarmor__(__name__, __file__, b'PY0000xx...') in newer versions
        $bootstrap = /__pyarmor__\s{0,2}\(\s{0,2}__name__\s{0,2},\s{0,2}__file__\s{0,2},\s{0,2}b['"]/
        $runtime_import = /from\s{1,4}(pyarmor_runtime(_\d{6})?|pytransform)\s{1,4}import\s{1,4}(__pyarmor__|pyarmor_runtime)/

    condition:
        $bootstrap or ($runtime_import and filesize < 2KB)
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule obfuscation_xor_decoded_exec
{
    meta:
        description = "Rebuilds code with a character XOR loop, as in chr(ord(a) ^ ord(b)), and hands the result to exec, eval or compile."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        // chr(ord(c) ^ ord(k)), chr(ord(c) ^ key), chr(c ^ k[i % n])
        $xor = /\bchr\s{0,2}\(\s{0,2}(ord\s{0,2}\([^()\n]{1,60}\)|\w{1,40}(\[[^\]\n]{1,40}\])?)\s{0,2}\^\s{0,2}(ord\s{0,2}\([^()\n]{1,60}\)|[\w\[\]%+ ().]{1,60})\)/
        $run = /\b(exec|eval|compile)\s{0,2}\(/

    condition:
        for any i in (1..#xor) : ( $run in (@xor[i]..@xor[i] + 1500) )
}

rule obfuscation_exec_alias
{
    meta:
        description = "Rebinds exec or eval to another name and calls it on decoded or escaped data, so that no exec( call appears."
        weight = 7
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        // a = exec / brownish = eval  (a bare rebinding on its own line or statement; form feeds are blanks
        // to the tokenizer, and a backslash at a line's end joins the next line)
        $alias = /(^|[\n;])[ \t\x0c]{0,16}\w{1,40}[ \t\x0c]{0,4}(\\\r?\n[ \t\x0c]{0,16})?=[ \t\x0c]{0,4}(\\\r?\n[ \t\x0c]{0,16})?(exec|eval|__builtins__\.exec|builtins\.exec)[ \t\x0c]{0,4}(\r?\n|;)/
        $decoded = /\b(b64decode|b32decode|b85decode|decompress|unhexlify|fromhex|marshal\.loads)\s{0,2}\(/
        $escaped = /['"](\\(x[0-9a-fA-F]{2}|[0-7]{3})){8}/
        $xor = /\bchr\s{0,2}\(\s{0,2}ord\s{0,2}\(/

    condition:
        $alias and ($decoded or $escaped or $xor)
}

rule obfuscation_confusable_identifiers
{
    meta:
        description = "Code renamed to look-alike identifiers (OO0O0O..., lIlIl..., __xx____) by a Python obfuscator, together with exec, eval, __import__ or a decoder."
        weight = 6
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        // identifiers start with a letter: OO0O0OO0, lIlI1lIl (a run of zeros or ones is a number)
        $o0 = /\bO[O0]{7,30}\b/
        $il = /\b[Il][Il1]{7,30}\b/
        // __xx____, written _*____\b rather than _{4,}\b: the atom is then the last four underscores and
        // only \b is checked forwards (forwards from every atom hit, _{4,} read to the end of a run of
        // underscores: quadratic on a flood of them)
        $underscores = /\b_{2,}[a-z]{0,12}_*____\b/
        $use = /\b(exec|eval|__import__|compile|b64decode|b16decode|decompress|loads)\s{0,2}\(/

    condition:
        $use and (#o0 > 20 or #il > 20 or #underscores > 30)
}

// CPython decodes a .py file with the codec its coding cookie names: under unicode_escape,
// raw_unicode_escape, UTF-7, an EBCDIC code page, ISO-2022, HZ or IDNA, `\x69mport os`, `+AGk-mport os` or
// `im\x1b(Bport os` runs as `import os`, so no rule that reads the file as ASCII sees the code; under
// JIS X 0213 or Johab letters that CPython reads as ASCII in identifiers (NFKC) are bytes the engine's
// reading of Python files (rust/core/src/walk/python_reading.rs) does not decode. CPython
// takes the first cookie of a comment on line 1, or on line 2 after a blank or comment line; lines end
// at \n, \r\n or \r. The pattern starts at its rare atom and only reads forwards; the condition checks
// the line structure once, from offset 0, for the first match: linear in the file however many cookies
// a hostile line repeats. A line opening with 256 or more spaces, tabs or form feeds counts as a comment
// line (CPython allows any number before the '#'). tests/test_coding_cookie_differential.py holds the
// rule against CPython's tokenizer.
// suppress: potentially_slow_loop
rule obfuscation_escaping_source_codec
{
    meta:
        description = "Python source declaring a coding cookie (unicode_escape, raw_unicode_escape, UTF-7, EBCDIC, ISO-2022, HZ, IDNA, JIS X 0213, Johab) under which its code can be written so that a reader of the bytes does not see it."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw"

    strings:
        // CPython reads [-\w.]+ after `coding:` or `coding=` and spaces or tabs; the codec lookup ignores
        // case and reads a run of '-' and '_' (or '.' in aliases) as one separator, leading and trailing
        // ones as none
        $cookie = /coding[:=][ \t]*[-_]*((raw[-_.]+)?unicode[-_.]+escape|utf[-_.]*7|u7|unicode[-_.]+1[-_.]+1[-_.]+utf[-_.]+7|(cp|ibm|csibm)?(037|039|1026|1140|273|424|500|875)|ebcdic[-_.]+cp[-_.]+(ca|nl|us|wt|he|be|ch)|hz([-_.]*gb([-_.]+2312)?)?|(cs)?iso[-_.]*2022[-_.]*(jp|kr)([-_.]+(1|2|2004|3|ext))?|idna|johab|(cp|ms)1361|(shift[-_.]*|s[-_.]*)?jis[-_.]*(2004|x0213)|euc[-_.]*jis[-_.]*(2004|x0213))[-_]*[^0-9a-z_.\-]/ nocase

    condition:
        // on line 1: no line break before it, and the line's first byte other than a space, tab or form
        // feed is '#'
        (
            math.count(0x0a, 0, @cookie[1]) + math.count(0x0d, 0, @cookie[1]) == 0 and
            (
                for any h in (0..math.min(255, @cookie[1] - 1)) : (
                    uint8(h) == 0x23 and
                    math.count(0x20, 0, h) + math.count(0x09, 0, h) + math.count(0x0c, 0, h) == h
                ) or
                (@cookie[1] > 256 and math.count(0x20, 0, 256) + math.count(0x09, 0, 256) + math.count(0x0c, 0, 256) == 256)
            )
        ) or
        // on line 2: e is the last byte of the one line break before it (a lone \n or \r, or \r\n)
        (
            math.count(0x0a, 0, @cookie[1]) + math.count(0x0d, 0, @cookie[1]) <= 2 and
            for any e in (0..@cookie[1] - 1) : (
                (uint8(e) == 0x0a or uint8(e) == 0x0d) and
                math.count(0x0a, e + 1, @cookie[1] - e - 1) + math.count(0x0d, e + 1, @cookie[1] - e - 1) == 0 and
                (
                    math.count(0x0a, 0, e) + math.count(0x0d, 0, e) == 0 or
                    (uint8(e) == 0x0a and uint8(e - 1) == 0x0d and math.count(0x0a, 0, e - 1) + math.count(0x0d, 0, e - 1) == 0)
                ) and
                // line 1 blank or a comment: its first byte other than a space, tab or form feed is '#' or
                // the line break
                (
                    for any h in (0..math.min(255, e)) : (
                        (uint8(h) == 0x23 or uint8(h) == 0x0d or uint8(h) == 0x0a) and
                        math.count(0x20, 0, h) + math.count(0x09, 0, h) + math.count(0x0c, 0, h) == h
                    ) or
                    (e >= 256 and math.count(0x20, 0, 256) + math.count(0x09, 0, 256) + math.count(0x0c, 0, 256) == 256)
                ) and
                // line 2 a comment
                (
                    for any h in (e + 1..math.min(e + 256, @cookie[1] - 1)) : (
                        uint8(h) == 0x23 and
                        math.count(0x20, e + 1, h - e - 1) + math.count(0x09, e + 1, h - e - 1) +
                        math.count(0x0c, e + 1, h - e - 1) == h - e - 1
                    ) or
                    (
                        @cookie[1] - e - 1 > 256 and
                        math.count(0x20, e + 1, 256) + math.count(0x09, e + 1, 256) + math.count(0x0c, e + 1, 256) == 256
                    )
                )
            )
        )
}

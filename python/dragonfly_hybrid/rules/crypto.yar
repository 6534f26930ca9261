/*
 * dragonfly-hybrid bundled rules: cryptocurrency theft.
 *
 * Clipboard hijackers that swap copied wallet addresses, stealers that collect wallet files and
 * browser-extension wallet storage, and wallet code that sends private keys to throwaway hosts.
 */

rule crypto_clipboard_swap
{
    meta:
        description = "Reads and rewrites the clipboard while matching cryptocurrency address formats (clipboard hijacker)."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw"

    strings:
        $read_pyperclip = /\bpyperclip\s{0,2}\.\s{0,2}paste\s{0,2}\(/
        $read_clipboard = /\bclipboard\s{0,2}\.\s{0,2}paste\s{0,2}\(/
        $read_win32 = "GetClipboardData"
        $read_tk = /\.\s{0,2}clipboard_get\s{0,2}\(/
        $read_cli = /['"](pbpaste|xclip -o|xsel -o|xsel --clipboard --output)/
        $write_pyperclip = /\bpyperclip\s{0,2}\.\s{0,2}copy\s{0,2}\(/
        $write_clipboard = /\bclipboard\s{0,2}\.\s{0,2}copy\s{0,2}\(/
        $write_win32 = /SetClipboard(Text|Data)\s{0,2}\(/
        $write_tk = /\.\s{0,2}clipboard_append\s{0,2}\(/
        // source text of address regexes: base58 classes (BTC/LTC/TRX), bech32 and Ethereum hex
        $addr_base58_a = "a-km-zA-HJ-NP-Z1-9"
        $addr_base58_b = "1-9A-HJ-NP-Za-km-z"
        $addr_bech32 = /bc1\s{0,2}[\[(]/
        $addr_eth = /0x\[(a-fA-F0-9|0-9a-fA-F|a-f0-9|0-9a-f|A-Fa-f0-9|0-9A-Fa-f)\]\{40\}/

    condition:
        any of ($read_*) and any of ($write_*) and any of ($addr_*)
}

rule crypto_wallet_theft
{
    meta:
        description = "Collects files of several desktop or browser-extension cryptocurrency wallets for copying or upload."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw"

    strings:
        $wallet_exodus = /Exodus['"]?\s{0,2}[\\\/,]{1,2}\s{0,2}['"]?\s{0,2}exodus\.wallet/
        $wallet_electrum = /Electrum['"]?\s{0,2}[\\\/,]{1,2}\s{0,2}['"]?\s{0,2}wallets/ nocase
        $wallet_ethereum = /Ethereum['"]?\s{0,2}[\\\/,]{1,2}\s{0,2}['"]?\s{0,2}keystore/
        $wallet_atomic = /atomic['"]?\s{0,2}[\\\/,]{1,2}\s{0,2}['"]?\s{0,2}Local Storage/
        $wallet_jaxx = "com.liberty.jaxx"
        $wallet_core = /Bitcoin['"]?\s{0,2}[\\\/,]{1,2}\s{0,2}['"]?\s{0,2}(wallets|wallet\.dat)/
        $wallet_zcash = /Zcash['"]?\s{0,2}[\\\/,]{1,2}\s{0,2}['"]?\s{0,2}wallet\.dat/
        $wallet_armory = /Armory['"]?\s{0,2}[\\\/,]{1,2}\s{0,2}['"]?\s{0,2}\*?\.?wallet/
        $wallet_coinomi = /Coinomi['"]?\s{0,2}[\\\/,]{1,2}\s{0,2}['"]?\s{0,2}Coinomi/
        // Chrome Web Store ids of MetaMask, Binance Wallet, Phantom, Coinbase Wallet and TronLink
        $ext_metamask = "nkbihfbeogaeaoehlefnkodbefgpgknn"
        $ext_binance = "fhbohimaelbohpjbbldcngcnapndodjp"
        $ext_phantom = "bfnaelmomeimhlpmgjnjophhpkkoljpa"
        $ext_coinbase = "hnfanknocfeofbddgcijnmhnfnkdnaad"
        $ext_tronlink = "ibnejdfjmmkpcnlpebklmnkoeoihofec"
        $collect_copy = /\bshutil\s{0,2}\.\s{0,2}(copytree|copy|copy2|copyfile|make_archive)\s{0,2}\(/
        $collect_zip = /\bzipfile\s{0,2}\.\s{0,2}ZipFile\s{0,2}\(/
        $collect_post = /\b(requests|httpx|session)\s{0,2}\.\s{0,2}(post|put)\s{0,2}\(/

    condition:
        2 of ($wallet_*, $ext_*) and any of ($collect_*)
}

// Loops run over match offsets only; `$ in (a..b)` keeps them cheap on hostile input.
// suppress: potentially_slow_loop
rule crypto_private_key_exfil
{
    meta:
        description = "Sends wallet private keys or mnemonics to a mock-API, tunnel, serverless or request-capture host."
        weight = 8
        author = "dragonfly-hybrid"
        filetype = ".py .pyw .pth"

    strings:
        $key = /\b(private_?key|privateKey|priv_key|secret_?key|mnemonic|seed_?phrase|wallet_key)\b|\.key\.hex\s{0,2}\(|\.private_key\s{0,2}\(/
        $host = /https?:\/\/[\w.-]{1,100}\.(mockapi\.io|ngrok\.io|ngrok-free\.app|ngrok\.app|trycloudflare\.com|m\.pipedream\.net|webhook\.site|requestbin\.(net|com)|beeceptor\.com|herokuapp\.com|repl\.co|glitch\.me|workers\.dev|onrender\.com|loca\.lt|serveo\.net)\b/
        $host_bare = /https?:\/\/(webhook\.site|requestbin\.(net|com)|hookb\.in)\//
        $send = /\b(requests|httpx|session)\s{0,2}\.\s{0,2}(post|put|get)\s{0,2}\(|\burlopen\s{0,2}\(/

    condition:
        any of ($host*) and
        for any i in (1..#key) : (
            $send in (@key[i] - 1500..@key[i] + 1500)
        )
}

// Copy text: the Clipboard API where allowed (https or localhost), else a hidden textarea and execCommand (WeCom's
// in-app browser on plain http).
export async function copyText(text: string): Promise<boolean> {
  try {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text)
      return true
    }
  } catch {
    // fall through to the textarea
  }
  const area = document.createElement('textarea')
  area.value = text
  area.setAttribute('readonly', '')
  area.style.position = 'fixed'
  area.style.top = '-1000px'
  area.style.opacity = '0'
  document.body.appendChild(area)
  area.select()
  area.setSelectionRange(0, text.length)
  let done = false
  try {
    done = document.execCommand('copy')
  } catch {
    done = false
  }
  document.body.removeChild(area)
  return done
}

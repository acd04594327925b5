// Run a loader now and every `ms` while the page is mounted and visible; never two at once.
import { onBeforeUnmount, onMounted } from 'vue'

export function usePoll(load: () => Promise<unknown>, ms: number, immediate = true): { now: () => Promise<void> } {
  let timer: number | undefined
  let running = false
  async function now(): Promise<void> {
    if (running) return
    running = true
    try {
      await load()
    } finally {
      running = false
    }
  }
  const tick = () => { if (!document.hidden) void now() }
  const visible = () => { if (!document.hidden) void now() }
  onMounted(() => {
    if (immediate) void now()
    timer = window.setInterval(tick, ms)
    document.addEventListener('visibilitychange', visible)
  })
  onBeforeUnmount(() => {
    window.clearInterval(timer)
    document.removeEventListener('visibilitychange', visible)
  })
  return { now }
}

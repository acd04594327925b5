// A reactive "is this a phone?" (≤ 768px, the same breakpoint as App.vue and .hide-phone).
import { onBeforeUnmount, ref, type Ref } from 'vue'

const QUERY = '(max-width: 768px)'

export function usePhone(): Ref<boolean> {
  const media = window.matchMedia(QUERY)
  const phone = ref(media.matches)
  const update = (e: MediaQueryListEvent) => { phone.value = e.matches }
  media.addEventListener('change', update)
  onBeforeUnmount(() => media.removeEventListener('change', update))
  return phone
}
